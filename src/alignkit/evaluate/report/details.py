"""The report's detail tables: accuracy per constraint type, the paired difference to the baseline, and a few
samples side by side. Each is a `Section` with a table (no plot); the studio (`alignkit.studio`) shows the same
rows in its run pages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from alignkit.evaluate.report.tables import SECTION_TITLES, Section, _estimate, _points
from alignkit.evaluate.runs import Run
from alignkit.evaluate.stats import Estimate, proportion_ci

# How many prompts the samples section shows, and how much of each text (the studio shows everything).
N_SAMPLE_PROMPTS = 5
PROMPT_CHARS = 240
COMPLETION_CHARS = 400


def by_type_accuracy(run: Run, loose: bool = False) -> dict[str, Estimate]:
    """eval.json `ifeval.by_type_strict` (or `_loose`) as estimates with a bootstrap interval over the
    instructions of each type: {instruction id: Estimate}. Empty when the run has none."""
    block = run.eval.get("ifeval")
    by = block.get("by_type_loose" if loose else "by_type_strict") if isinstance(block, dict) else None
    out: dict[str, Estimate] = {}
    if not isinstance(by, dict):
        return out
    for kind, v in by.items():
        if not isinstance(v, dict):
            continue
        followed, total = v.get("followed"), v.get("total")
        if not isinstance(followed, int) or not isinstance(total, int) or total <= 0 or not 0 <= followed <= total:
            continue
        # The instructions are the unit (each type occurs at most a few times per prompt in IFEval).
        out[str(kind)] = proportion_ci([1.0] * followed + [0.0] * (total - followed), n_resamples=1000)
    return out


def by_type_section(runs: Sequence[Run]) -> Section:
    """One row per instruction type, one column per run: strict accuracy [95% CI] (followed/total)."""
    sec = Section("by_type", SECTION_TITLES["by_type"], [])
    per_run = {r.name: by_type_accuracy(r) for r in runs}
    per_run = {k: v for k, v in per_run.items() if v}
    if not per_run:
        sec.note = "no run has eval.json ifeval.by_type_strict (written by `alignkit eval` on constrained prompts)"
        return sec
    kinds = sorted({k for v in per_run.values() for k in v})
    body = []
    for kind in kinds:
        cells = [kind]
        for name in per_run:
            e = per_run[name].get(kind)
            cells.append(f"{e.format(1, percent=True)} (n={e.n})" if e is not None else "—")
        body.append(cells)
    sec.table = (["constraint type", *[f"{n}: strict acc." for n in per_run]], body)
    return sec


def paired_section(runs: Sequence[Run]) -> Section:
    """`paired_vs_baseline` of each run: the difference to the baseline on the same prompts, with its paired
    bootstrap interval (accuracies in points, rewards in reward units)."""
    sec = Section("paired", SECTION_TITLES["paired"], [])
    body = []
    for run in runs:
        paired = run.eval.get("paired_vs_baseline")
        if not isinstance(paired, dict):
            continue
        base = run.eval.get("win_rate", {}).get("baseline", "") if isinstance(run.eval.get("win_rate"), dict) else ""
        for key, v in paired.items():
            e = _estimate(v)
            if e is None:
                continue
            shown = _points(e) if "accuracy" in key or "rate" in key else \
                f"{e.value:+.4f} [{e.low:+.4f}, {e.high:+.4f}]"
            body.append([run.name, key, shown, str(e.n) if e.n else "", str(base)])
    if body:
        sec.table = (["run", "metric", "Δ vs baseline [95% CI]", "n prompts", "baseline"], body)
    else:
        sec.note = "no run has eval.json paired_vs_baseline (written by `alignkit eval --baseline RUN`)"
    return sec


def sample_key(row: dict[str, Any], index: int) -> str:
    """What joins samples of several runs: the prompt id, else the prompt itself, else the row's position."""
    if "id" in row:
        return str(row["id"])
    if "prompt" in row:
        return json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False)
    return f"#{index}"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a chat prompt: the last message
        return str(value[-1].get("content", "")) if value and isinstance(value[-1], dict) else json.dumps(value)
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def samples_section(runs: Sequence[Run], n_prompts: int = N_SAMPLE_PROMPTS) -> Section:
    """The first `n_prompts` prompts of the first run with samples, and every run's completion for each."""
    sec = Section("samples", SECTION_TITLES["samples"], [])
    indexed = {r.name: {sample_key(row, i): row for i, row in enumerate(r.samples)} for r in runs if r.samples}
    if not indexed:
        sec.note = "no run has samples.jsonl"
        return sec
    first = next(iter(indexed.values()))
    body = []
    for key in list(first)[:n_prompts]:
        for name, rows in indexed.items():
            row = rows.get(key)
            if row is None:
                continue
            rew = row.get("reward")
            body.append([key if len(key) < 40 else _clip(key, 40), name, _clip(_text(row.get("prompt")), PROMPT_CHARS),
                         _clip(_text(row.get("completion")), COMPLETION_CHARS),
                         f"{rew:.3f}" if isinstance(rew, int | float) and not isinstance(rew, bool) else "—",
                         str(row.get("finish_reason", "—"))])
    sec.table = (["prompt id", "run", "prompt", "completion", "reward", "finish"], body)
    sec.note = (f"the first {min(n_prompts, len(first))} of {len(first)} prompts; texts are cut at "
                f"{COMPLETION_CHARS} characters (`alignkit studio` shows them whole)")
    return sec
