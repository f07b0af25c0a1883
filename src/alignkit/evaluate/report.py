"""Compare runs: a summary table, plots, and one self-contained HTML file (or Markdown + PNGs).

`write_html(runs, path)` embeds every plot as a base64 PNG in a single HTML file with inline CSS and no scripts or
network references, so it opens anywhere. `write_markdown(runs, path)` writes the same sections with the PNGs in a
sibling folder `<stem>_files/`. Sections whose data is absent are kept with a note saying what was missing.

What is read from each run (see `alignkit.evaluate.runs` for the files):
* `eval.json` (all keys optional): `method` (str); `constraint_accuracy`, `reward`, `kl`, `win_rate` (estimates:
  `{"value", "low", "high"[, "n"]}` or a bare number); `compute` (mapping of counts, e.g. forward_tokens,
  generated_tokens, reward_calls, seconds); `baseline` (mapping with the same estimate keys, measured on the model
  before alignment: the "before" of before/after plots); `ifeval` (`prompt_strict`, `prompt_loose`,
  `instruction_strict`, `instruction_loose` estimates); `frontier` (list of `{"label", "kl", "reward"}` extra
  reward–KL points, e.g. best-of-N at several N). Any other estimate, top-level or one mapping deep, is listed
  under "All headline metrics".
* `metrics.jsonl`: `step` (else the row index) with `loss`, `rewards/accuracy` (or `rewards/accuracies`),
  `rewards/margin` (or `rewards/margins`), `eval/<name>` keys, and online RL's per-step `reward` and `kl`.
* `samples.jsonl`: `reward` for distributions; with `strategy` (and optional `budget`) and `compute`, the
  reward-vs-compute plot (x = mean forward tokens per sample; y = mean reward with CI).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.kl import bon_kl_bound, reward_kl_frontier
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
    "headline": "All headline metrics",
}


# ----------------------------------------------------------------------------------------------------- data access
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
    if run.metrics:
        last = run.metrics[-1]
        return {k: float(last[k]) for k in ("tokens", "seconds") if isinstance(last.get(k), int | float)}
    return {}


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
            "compute": _compute_totals(run),
            "steps": sum(1 for r in run.metrics if "step" in r),
            "final_loss": float(loss[1][-1]) if loss is not None else None,
        })
    return rows


def format_summary(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells for display (estimates as `value [low, high]`)."""
    header = ["run", "method", "constraint acc.", "reward", "KL (nats)", "win rate", "compute", "final loss"]
    body = []
    for r in rows:
        cells = [r["run"], r["method"]]
        for k in ESTIMATE_KEYS:
            e = r[k]
            cells.append(e.format(3, percent=k in ("constraint_accuracy", "win_rate")) if e is not None else "—")
        cells.append(format_compute(r["compute"]))
        cells.append(f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "—")
        body.append(cells)
    return header, body


def print_summary(rows: Sequence[dict[str, Any]], console: Any = None) -> None:
    """Print the summary as a rich table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    header, body = format_summary(rows)
    table = Table(title="alignkit runs")
    for h in header:
        table.add_column(h, overflow="fold")
    for cells in body:
        table.add_row(*cells)
    (console or Console()).print(table)


def _as_runs(runs: Sequence[Run | str | Path]) -> list[Run]:
    paths = [r for r in runs if not isinstance(r, Run)]
    loaded = iter(load_runs(paths)) if paths else iter(())
    return [r if isinstance(r, Run) else next(loaded) for r in runs]


# ------------------------------------------------------------------------------------------------------- plotting
@dataclass
class Section:
    key: str
    title: str
    images: list[tuple[str, bytes]]  # (caption, png bytes)
    note: str | None = None
    table: tuple[list[str], list[list[str]]] | None = None


def _figure(n_panels: int = 1, width: float = 5.2, height: float = 3.6) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colors(runs: Sequence[Run]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {r.name: cmap(i % 10) for i, r in enumerate(runs)}


def _training_section(runs: Sequence[Run], colors: dict[str, Any]) -> Section:
    sec = Section("training", SECTION_TITLES["training"], [])
    panels = [("loss", LOSS_KEYS), ("reward accuracy", ACCURACY_KEYS), ("reward margin", MARGIN_KEYS), *ONLINE_KEYS]
    present = [(t, k) for t, k in panels if any(_series(r, k) is not None for r in runs)]
    if present:
        fig, axes = _figure(len(present), width=4.4)
        for ax, (title, keys) in zip(axes, present, strict=True):
            for run in runs:
                s = _series(run, keys)
                if s is not None:
                    ax.plot(s[0], s[1], label=run.name, color=colors[run.name], lw=1.4)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        sec.images.append(("training curves", _png(fig)))
    eval_keys = sorted({k for r in runs for row in r.metrics for k in row if k.startswith("eval/")
                        and isinstance(row[k], int | float) and not isinstance(row[k], bool)})
    if eval_keys:
        shown = eval_keys[:6]
        fig, axes = _figure(len(shown), width=4.0)
        for ax, key in zip(axes, shown, strict=True):
            for run in runs:
                s = _series(run, (key,))
                if s is not None:
                    ax.plot(s[0], s[1], marker="o", ms=3, label=run.name, color=colors[run.name])
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        sec.images.append(("evaluation during training", _png(fig)))
        if len(eval_keys) > len(shown):
            sec.note = f"{len(eval_keys) - len(shown)} more eval/ metrics not plotted: {', '.join(eval_keys[6:])}"
    if not sec.images:
        sec.note = "no run has metrics.jsonl rows with loss, rewards/accuracy, rewards/margin, reward or eval/ keys"
    return sec


def _rewards_section(runs: Sequence[Run], colors: dict[str, Any]) -> Section:
    sec = Section("rewards", SECTION_TITLES["rewards"], [])
    loaded = {r.name: _sample_rewards(r) for r in runs}
    data = {k: v for k, (v, _) in loaded.items() if v.size}
    skipped = {k: n for k, (_, n) in loaded.items() if n}
    if not data:
        sec.note = "no run has samples.jsonl with numeric rewards"
        return sec
    allv = np.concatenate(list(data.values()))
    lo, hi = float(allv.min()), float(allv.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
    fig, (ax,) = _figure(1, width=7.0)
    for name, v in data.items():
        ax.hist(v, bins=edges, alpha=0.45, color=colors[name], label=f"{name} (n={v.size}, mean {v.mean():.3f})")
        ax.axvline(v.mean(), color=colors[name], ls="--", lw=1)
    ax.set_xlabel("reward")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    sec.images.append(("reward distributions", _png(fig)))
    notes = []
    missing = [r.name for r in runs if r.name not in data]
    if missing:
        notes.append(f"no sample rewards for: {', '.join(missing)}")
    if skipped:
        notes.append("samples without a numeric reward, left out: "
                     + ", ".join(f"{k} ({n})" for k, n in skipped.items()))
    sec.note = "; ".join(notes) or None
    return sec


def _constraints_section(runs: Sequence[Run], colors: dict[str, Any]) -> Section:
    sec = Section("constraints", SECTION_TITLES["constraints"], [])
    after = {r.name: _headline(r, "constraint_accuracy") for r in runs}
    before = {r.name: _estimate((r.eval.get("baseline") or {}).get("constraint_accuracy"))
              if isinstance(r.eval.get("baseline"), dict) else None for r in runs}
    names = [n for n in after if after[n] is not None or before[n] is not None]
    if not names:
        sec.note = "no run has eval.json constraint_accuracy (or ifeval.prompt_loose)"
        return sec
    fig, (ax,) = _figure(1, width=max(5.0, 1.4 * len(names) + 2))
    x = np.arange(len(names))
    w = 0.38
    for off, label, src, hatch in ((-w / 2, "before", before, "//"), (w / 2, "after", after, "")):
        for i, n in enumerate(names):
            e = src[n]
            if e is None:
                continue
            err = [[e.value - e.low], [e.high - e.value]]
            ax.bar(x[i] + off, e.value, w, color=colors[n], alpha=0.5 if label == "before" else 0.95, hatch=hatch,
                   edgecolor="black", yerr=err, capsize=3, label=label if i == 0 else None)
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_ylabel("constraint accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    sec.images.append(("constraint accuracy before and after alignment (95% CI)", _png(fig)))
    no_before = [n for n in names if before[n] is None]
    if no_before:
        sec.note = f"no baseline (before) measurement in eval.json for: {', '.join(no_before)}"
    return sec


def _compute_section(runs: Sequence[Run], colors: dict[str, Any]) -> Section:
    sec = Section("compute", SECTION_TITLES["compute"], [])
    groups: dict[tuple[str, str, float], list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        for row in run.samples:
            strat, comp, rew = row.get("strategy"), row.get("compute"), row.get("reward")
            if not isinstance(strat, str) or not isinstance(comp, dict) or not isinstance(rew, int | float):
                continue  # not a test-time strategy row (counted under reward distributions if rewardless)
            budget = row.get("budget", 0)
            budget = float(budget) if isinstance(budget, int | float) else 0.0
            groups[(run.name, strat, budget)].append((float(comp.get("forward_tokens", 0)), float(rew)))
    if not groups:
        sec.note = "no samples.jsonl rows with 'strategy', 'compute' and 'reward'"
        return sec
    from matplotlib import colormaps

    strategies = sorted({k[1] for k in groups})
    markers = "osD^v<>pPX*"
    cmap = colormaps["tab10"]
    fig, (ax,) = _figure(1, width=7.0)
    lines: dict[tuple[str, str], list[tuple[float, Estimate]]] = defaultdict(list)
    for (run_name, strat, _budget), vals in groups.items():
        arr = np.asarray(vals)
        lines[(run_name, strat)].append((float(arr[:, 0].mean()), mean_ci(arr[:, 1])))
    multi_run = len({k[0] for k in lines}) > 1
    for (run_name, strat), pts in sorted(lines.items()):
        pts.sort(key=lambda p: p[0])
        xs = [p[0] for p in pts]
        ys = [p[1].value for p in pts]
        err = [[p[1].value - p[1].low for p in pts], [p[1].high - p[1].value for p in pts]]
        si = strategies.index(strat)
        label = f"{run_name}: {strat}" if multi_run else strat
        ax.errorbar(xs, ys, yerr=err, marker=markers[si % len(markers)], capsize=3, label=label,
                    color=cmap(si % 10) if not multi_run else colors[run_name], ls="-" if len(pts) > 1 else "none")
    ax.set_xscale("log" if max(x for p in lines.values() for x, _ in p) > 50 * max(
        1.0, min(x for p in lines.values() for x, _ in p)) else "linear")
    ax.set_xlabel("forward tokens per sample (mean)")
    ax.set_ylabel("reward (mean, 95% CI)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    sec.images.append(("reward vs compute", _png(fig)))
    return sec


def _frontier_section(runs: Sequence[Run], colors: dict[str, Any]) -> Section:
    sec = Section("frontier", SECTION_TITLES["frontier"], [])
    pts: list[tuple[str, str, Estimate, Estimate]] = []  # (label, run, kl, reward)
    for run in runs:
        kl, rew = _headline(run, "kl"), _headline(run, "reward")
        if kl is not None and rew is not None:
            pts.append((run.name, run.name, kl, rew))
        extra = run.eval.get("frontier")
        if isinstance(extra, list):
            for i, p in enumerate(extra):
                k, r = (_estimate(p.get("kl")), _estimate(p.get("reward"))) if isinstance(p, dict) else (None, None)
                if k is None or r is None:
                    raise DataError(f"frontier point {i} needs numeric 'kl' and 'reward'",
                                    source=str(run.path / "eval.json"), field="frontier")
                pts.append((f"{run.name}: {p.get('label', i)}", run.name, k, r))
    if not pts:
        sec.note = "no run has both kl and reward in eval.json"
        return sec
    front = reward_kl_frontier([(lab, k.value, r.value) for lab, _, k, r in pts])
    fig, (ax,) = _figure(1, width=7.0)
    for lab, run_name, k, r in pts:
        ax.errorbar([k.value], [r.value], xerr=[[k.value - k.low], [k.high - k.value]],
                    yerr=[[r.value - r.low], [r.high - r.value]], marker="o", color=colors[run_name], capsize=3)
        ax.annotate(lab, (k.value, r.value), textcoords="offset points", xytext=(4, 4), fontsize=7)
    on = [p for p in front if p.on_frontier]
    ax.plot([p.kl for p in on], [p.reward for p in on], "k--", lw=1, label="Pareto frontier")
    kmax = max(p.kl for p in front)
    for n in (2, 4, 8, 16, 64, 256):
        b = bon_kl_bound(n)
        if b <= kmax * 1.15:
            ax.axvline(b, color="grey", lw=0.6, ls=":")
            ax.text(b, ax.get_ylim()[1], f"BoN N={n}", rotation=90, fontsize=6, va="top", ha="right", color="grey")
    ax.set_xlabel("KL(policy ‖ reference), nats")
    ax.set_ylabel("reward")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    sec.images.append(("reward vs KL; dotted lines: best-of-N KL bound log N − (N−1)/N", _png(fig)))
    sec.table = (["point", "KL", "reward", "on frontier"],
                 [[p.label, f"{p.kl:.4f}", f"{p.reward:.4f}", "yes" if p.on_frontier else ""] for p in front])
    return sec


def _headline_section(runs: Sequence[Run]) -> Section:
    sec = Section("headline", SECTION_TITLES["headline"], [])
    body = []
    for run in runs:
        for key, v in run.eval.items():
            if key in ("method", "compute", "frontier"):
                continue
            e = _estimate(v)
            if e is not None:
                body.append([run.name, key, e.format(4), str(e.n) if e.n else ""])
            elif isinstance(v, dict):
                for sub, sv in v.items():
                    se = _estimate(sv)
                    if se is not None:
                        body.append([run.name, f"{key}.{sub}", se.format(4), str(se.n) if se.n else ""])
    if body:
        sec.table = (["run", "metric", "value [95% CI]", "n"], body)
    else:
        sec.note = "no run has eval.json"
    return sec


def build_sections(runs: Sequence[Run]) -> list[Section]:
    """All report sections in order (summary first); plots are rendered here."""
    colors = _colors(runs)
    summary = Section("summary", SECTION_TITLES["summary"], [], table=format_summary(summary_table(runs)))
    return [summary, _training_section(runs, colors), _rewards_section(runs, colors),
            _constraints_section(runs, colors), _compute_section(runs, colors), _frontier_section(runs, colors),
            _headline_section(runs)]


# -------------------------------------------------------------------------------------------------------- writers
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;padding:0 1rem;
color:#1f2328;background:#fff}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.2rem}
.meta{color:#59636e;font-size:.9rem}
table{border-collapse:collapse;font-size:.9rem;margin:.6rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr:nth-child(even) td{background:#fbfcfd}
.figs{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:.5rem;background:#fff;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#59636e;font-size:.85rem;margin-top:.3rem}
.note{color:#8a6d00;background:#fff8c5;border:1px solid #eed888;border-radius:6px;padding:.4rem .7rem}
"""


def _html_table(header: list[str], body: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{rows}</tbody></table>"


def render_html(runs: Sequence[Run | str | Path], title: str = "alignkit report") -> str:
    """The whole report as one self-contained HTML string."""
    loaded = _as_runs(runs)
    sections = build_sections(loaded)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class=\"meta\">{len(loaded)} run(s), generated {now}: "
             + ", ".join(f"<code>{html.escape(r.name)}</code> ({html.escape(str(r.path))})" for r in loaded)
             + "</p>"]
    for sec in sections:
        parts.append(f"<section id=\"{sec.key}\"><h2>{html.escape(sec.title)}</h2>")
        if sec.table is not None:
            parts.append(_html_table(*sec.table))
        if sec.images:
            parts.append("<div class=\"figs\">")
            for caption, png in sec.images:
                b64 = base64.b64encode(png).decode("ascii")
                parts.append(f"<figure><img src=\"data:image/png;base64,{b64}\" alt=\"{html.escape(caption)}\">"
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            parts.append("</div>")
        if sec.note:
            parts.append(f"<p class=\"note\">{html.escape(sec.note)}</p>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _atomic_write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)


def write_html(runs: Sequence[Run | str | Path], path: str | Path, title: str = "alignkit report") -> Path:
    """Write the self-contained HTML report; returns its path."""
    p = Path(path)
    _atomic_write(p, render_html(runs, title))
    return p


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def write_markdown(runs: Sequence[Run | str | Path], path: str | Path, title: str = "alignkit report") -> Path:
    """Write a Markdown report; plots go to `<stem>_files/<section>-<i>.png` next to it."""
    p = Path(path)
    loaded = _as_runs(runs)
    sections = build_sections(loaded)
    fig_dir = p.with_name(f"{p.stem}_files")
    lines = [f"# {title}", "", f"{len(loaded)} run(s): " + ", ".join(f"`{r.name}` ({r.path})" for r in loaded), ""]
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        if sec.table is not None:
            header, body = sec.table
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body]
            lines.append("")
        for i, (caption, png) in enumerate(sec.images):
            fig_dir.mkdir(parents=True, exist_ok=True)
            name = f"{sec.key}-{i}.png"
            (fig_dir / name).write_bytes(png)
            lines += [f"![{caption}]({fig_dir.name}/{name})", "", f"*{caption}*", ""]
        if sec.note:
            lines += [f"> **Note:** {sec.note}", ""]
    _atomic_write(p, "\n".join(lines))
    return p
