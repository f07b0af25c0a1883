"""What the report reads from each run, and its tables: headline estimates, the summary table (for the terminal,
HTML and Markdown) and the "All headline metrics" section. `Section` is the unit every writer renders."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.runs import Run, load_runs
from alignkit.evaluate.stats import Estimate, mean_ci

LOSS_KEYS = ("loss", "train/loss")


ACCURACY_KEYS = ("rewards/accuracy", "rewards/accuracies")


MARGIN_KEYS = ("rewards/margin", "rewards/margins")


ONLINE_KEYS = (("mean reward (online RL)", ("reward",)), ("KL to reference (online RL)", ("kl",)))


ESTIMATE_KEYS = ("constraint_accuracy", "reward", "kl", "win_rate")


SECTION_TITLES = {
    "summary": "Summary",
    "training": "Training curves",
    "rewards": "Reward distributions",
    "constraints": "Constraint satisfaction before/after",
    "compute": "Reward vs compute (test-time strategies)",
    "frontier": "Reward–KL frontier",
    "paired": "Paired difference to the baseline",
    "by_type": "Constraint accuracy by type",
    "samples": "Samples",
    "headline": "All headline metrics",
}


@dataclass
class Section:
    key: str
    title: str
    images: list[tuple[str, bytes]]  # (caption, png bytes)
    note: str | None = None
    table: tuple[list[str], list[list[str]]] | None = None


def _estimate(v: Any) -> Estimate | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return Estimate(float(v), float(v), float(v), 0) if math.isfinite(v) else None
    if isinstance(v, dict) and isinstance(v.get("value"), int | float) and not isinstance(v.get("value"), bool):
        try:
            return Estimate.from_dict(v)
        except DataError:
            return None
    return None


def _sample_rewards(run: Run) -> tuple[np.ndarray, int]:
    """Numeric sample rewards and the number of rows without one (reported in the section note, never hidden)."""
    vals = [r.get("reward") for r in run.samples]
    good = [float(v) for v in vals if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    return np.asarray(good, dtype=float), len(vals) - len(good)


def _compute_totals(run: Run) -> dict[str, float]:
    comp = run.eval.get("compute")
    if isinstance(comp, dict):
        return {k: float(v) for k, v in comp.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    totals: dict[str, float] = defaultdict(float)
    for row in run.samples:
        c = row.get("compute")
        if isinstance(c, dict):
            for k, v in c.items():
                if isinstance(v, int | float):
                    totals[k] += float(v)
    if totals:
        return dict(totals)
    return _training_totals(run)


def _training_totals(run: Run) -> dict[str, float]:
    """A training run's `tokens` and `seconds` summed over its steps: metrics.jsonl holds per-step counts (one
    row per optimizer step; a step logged twice, by a resume, counts once: its last row)."""
    per_step: dict[Any, dict[str, Any]] = {}
    for i, row in enumerate(run.metrics):
        if any(isinstance(row.get(k), int | float) and not isinstance(row.get(k), bool) for k in ("tokens", "seconds")):
            per_step[row.get("step", f"#{i}")] = row
    totals = {}
    for k in ("tokens", "seconds"):
        vals = [float(r[k]) for r in per_step.values() if isinstance(r.get(k), int | float)
                and not isinstance(r.get(k), bool)]
        if vals:
            totals[k] = sum(vals)
    return totals


def _headline(run: Run, key: str) -> Estimate | None:
    est = _estimate(run.eval.get(key))
    if est is not None:
        return est
    if key == "constraint_accuracy" and isinstance(run.eval.get("ifeval"), dict):
        return _estimate(run.eval["ifeval"].get("prompt_loose"))
    if key == "reward":
        r, _ = _sample_rewards(run)
        if r.size:
            return mean_ci(r)
    return None


def _series(run: Run, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    xs, ys = [], []
    for i, row in enumerate(run.metrics):
        for k in keys:
            v = row.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                step = row.get("step", i)
                xs.append(float(step) if isinstance(step, int | float) else float(i))
                ys.append(float(v))
                break
    return (np.asarray(xs), np.asarray(ys)) if xs else None


def _fmt_count(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.1f}{unit}"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def format_compute(comp: dict[str, float]) -> str:
    names = {"forward_tokens": "fwd", "generated_tokens": "gen", "reward_calls": "rm", "tokens": "tok",
             "seconds": "s"}
    parts = [f"{names.get(k, k)} {_fmt_count(v)}" for k, v in comp.items()]
    return " · ".join(parts) if parts else "—"


def _paired_gain(run: Run) -> Estimate | None:
    """Constraint accuracy minus the baseline's on the same prompts, with its paired bootstrap interval
    (`paired_vs_baseline` in eval.json, written by `alignkit eval --baseline`)."""
    paired = run.eval.get("paired_vs_baseline")
    return _estimate(paired.get("constraint_accuracy")) if isinstance(paired, dict) else None


def summary_table(runs: Sequence[Run | str | Path]) -> list[dict[str, Any]]:
    """One row per run: `run`, `method`, `constraint_accuracy`, `reward`, `kl`, `win_rate` (Estimate or None),
    `compute` (dict of totals), `steps` (number of metrics rows with a step), `final_loss` (float or None)."""
    loaded = _as_runs(runs)
    rows = []
    for run in loaded:
        loss = _series(run, LOSS_KEYS)
        rows.append({
            "run": run.name, "method": run.method,
            **{k: _headline(run, k) for k in ESTIMATE_KEYS},
            "paired_gain": _paired_gain(run),
            "compute": _compute_totals(run),
            "steps": sum(1 for r in run.metrics if "step" in r),
            "final_loss": float(loss[1][-1]) if loss is not None else None,
        })
    return rows


def format_summary(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells for display (estimates as `value [low, high]`)."""
    header = ["run", "method", "prompts", "constraint acc.", "Δ acc. vs base (paired)", "reward", "KL (nats)",
              "win rate", "compute", "final loss"]
    body = []
    for r in rows:
        n = next((r[k].n for k in ("constraint_accuracy", "reward") if r[k] is not None and r[k].n), None)
        cells = [r["run"], r["method"], str(n) if n else "—"]
        for k in ESTIMATE_KEYS:
            e = r[k]
            cells.append(e.format(3, percent=k in ("constraint_accuracy", "win_rate")) if e is not None else "—")
            if k == "constraint_accuracy":
                gain = r.get("paired_gain")
                cells.append(_points(gain) if gain is not None else "—")
        cells.append(format_compute(r["compute"]))
        cells.append(f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "—")
        body.append(cells)
    return header, body


def _points(e: Estimate) -> str:
    """A difference of proportions in percentage points, with its interval: `+12.5 [+4.2, +20.8] pt`."""
    return f"{100 * e.value:+.1f} [{100 * e.low:+.1f}, {100 * e.high:+.1f}] pt"


def print_summary(rows: Sequence[dict[str, Any]], console: Any = None) -> None:
    """Print the summary as a rich table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    header, body = format_summary(rows)
    # Columns no run has (all "—") only take width; the run column is always kept.
    keep = [j for j in range(len(header)) if j == 0 or any(cells[j] != "—" for cells in body)]
    header, body = [header[j] for j in keep], [[cells[j] for j in keep] for cells in body]
    if _table_width(header, body) <= console.width:
        table = Table(title="alignkit runs")
        for h in header:
            table.add_column(h, overflow="fold")
        for cells in body:
            table.add_row(*cells)
        console.print(table)
        return
    # Too wide for the terminal (80 columns by default): a rich table would fold every cell into a tall column
    # of fragments, so print one block per run instead, each value on a line of its own.
    console.print("[b]alignkit runs[/b]")
    for cells in body:
        console.print(f"[b]{_markup_escape(cells[0])}[/b]")
        for h, c in zip(header[1:], cells[1:], strict=True):
            console.print(f"  {_markup_escape(h)}: {_markup_escape(c)}", overflow="fold")


def _table_width(header: list[str], body: list[list[str]]) -> int:
    """Width of a rich table (box borders and one space of padding each side) with no cell folded."""
    widths = [max([len(h), *(len(r[j]) for r in body)]) for j, h in enumerate(header)]
    return sum(widths) + 3 * len(widths) + 1


def _markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _as_runs(runs: Sequence[Run | str | Path]) -> list[Run]:
    paths = [r for r in runs if not isinstance(r, Run)]
    loaded = iter(load_runs(paths)) if paths else iter(())
    return [r if isinstance(r, Run) else next(loaded) for r in runs]


def _value_text(raw: Any, e: Estimate) -> str:
    """A count stays a count (`n_prompts` 8, not 8.0000); other values get 4 digits and their interval."""
    return str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else e.format(4)


def _headline_section(runs: Sequence[Run]) -> Section:
    sec = Section("headline", SECTION_TITLES["headline"], [])
    body = []
    for run in runs:
        for key, v in run.eval.items():
            if key in ("method", "compute", "frontier"):
                continue
            e = _estimate(v)
            if e is not None:
                body.append([run.name, key, _value_text(v, e), str(e.n) if e.n else ""])
            elif isinstance(v, dict):
                for sub, sv in v.items():
                    se = _estimate(sv)
                    if se is not None:
                        body.append([run.name, f"{key}.{sub}", _value_text(sv, se), str(se.n) if se.n else ""])
    if body:
        sec.table = (["run", "metric", "value [95% CI]", "n"], body)
    else:
        sec.note = "no run has eval.json"
    return sec
