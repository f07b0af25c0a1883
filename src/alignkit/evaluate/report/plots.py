"""The report's plotted sections (training curves, reward distributions, constraint accuracy before/after, reward vs
compute, the reward–KL frontier), rendered to PNG bytes with matplotlib's object API (no global pyplot state)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.kl import bon_kl_bound, reward_kl_frontier
from alignkit.evaluate.report.details import by_type_section, paired_section, samples_section
from alignkit.evaluate.report.tables import (
    ACCURACY_KEYS,
    LOSS_KEYS,
    MARGIN_KEYS,
    ONLINE_KEYS,
    SECTION_TITLES,
    Section,
    _estimate,
    _headline,
    _headline_section,
    _sample_rewards,
    _series,
    format_summary,
    summary_table,
)
from alignkit.evaluate.runs import Run
from alignkit.evaluate.stats import Estimate, mean_ci


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


def constraints_figure(names: Sequence[str], before: dict[str, Estimate | None], after: dict[str, Estimate | None],
                       colors: dict[str, Any]) -> Any:
    """Bars of constraint accuracy before (hatched, pale) and after (solid) for each run, with 95% CIs.

    The legend has one entry per kind (grey proxies, as the bar colours are the runs'), so it shows "before"
    whenever any run has one; a bar of height 0 is drawn as an outlined stub with its value, not hidden."""
    from matplotlib.patches import Patch

    fig, (ax,) = _figure(1, width=max(5.0, 1.4 * len(names) + 2))
    x = np.arange(len(names))
    w = 0.38
    kinds = (("before", -w / 2, before, "//", 0.5), ("after", w / 2, after, "", 0.95))
    shown = set()
    for label, off, src, hatch, alpha in kinds:
        for i, n in enumerate(names):
            e = src.get(n)
            if e is None:
                continue
            shown.add(label)
            err = [[max(e.value - e.low, 0.0)], [max(e.high - e.value, 0.0)]]
            # A zero bar is invisible; an outlined stub of 0.5% keeps it on the chart, and the value says 0.
            height = e.value if e.value > 0 else 0.005
            ax.bar(x[i] + off, height, w, color=colors[n], alpha=alpha, hatch=hatch, edgecolor="black", yerr=err,
                   capsize=3)
            ax.text(x[i] + off, e.high + 0.02, f"{100 * e.value:.0f}%", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("constraint accuracy")
    handles = [Patch(facecolor="lightgrey", edgecolor="black", hatch=h, alpha=a, label=lab)
               for lab, _, _, h, a in kinds if lab in shown]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    return fig


def _constraints_section(runs: Sequence[Run], colors: dict[str, Any]) -> Section:
    sec = Section("constraints", SECTION_TITLES["constraints"], [])
    after = {r.name: _headline(r, "constraint_accuracy") for r in runs}
    before = {r.name: _estimate((r.eval.get("baseline") or {}).get("constraint_accuracy"))
              if isinstance(r.eval.get("baseline"), dict) else None for r in runs}
    names = [n for n in after if after[n] is not None or before[n] is not None]
    if not names:
        sec.note = "no run has eval.json constraint_accuracy (or ifeval.prompt_loose)"
        return sec
    fig = constraints_figure(names, before, after, colors)
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


def build_sections(runs: Sequence[Run]) -> list[Section]:
    """All report sections in order (summary first); plots are rendered here."""
    colors = _colors(runs)
    summary = Section("summary", SECTION_TITLES["summary"], [], table=format_summary(summary_table(runs)))
    return [summary, paired_section(runs), _training_section(runs, colors), _rewards_section(runs, colors),
            _constraints_section(runs, colors), by_type_section(runs), _compute_section(runs, colors),
            _frontier_section(runs, colors), samples_section(runs), _headline_section(runs)]


def build_section(runs: Sequence[Run], key: str) -> Section:
    """One section by its key (SECTION_TITLES), rendered alone: the studio's run pages show a few of them."""
    colors = _colors(runs)
    makers = {"summary": lambda: Section("summary", SECTION_TITLES["summary"], [],
                                         table=format_summary(summary_table(runs))),
              "paired": lambda: paired_section(runs), "training": lambda: _training_section(runs, colors),
              "rewards": lambda: _rewards_section(runs, colors),
              "constraints": lambda: _constraints_section(runs, colors), "by_type": lambda: by_type_section(runs),
              "compute": lambda: _compute_section(runs, colors), "frontier": lambda: _frontier_section(runs, colors),
              "samples": lambda: samples_section(runs), "headline": lambda: _headline_section(runs)}
    if key not in makers:
        raise DataError(f"unknown report section {key!r}; expected one of {', '.join(makers)}")
    return makers[key]()

