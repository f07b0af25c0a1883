"""Issue #17.4: the report's accuracy-by-type, paired-difference and samples sections, eval.json's per-type
counts, and the fixes (before/after legend and zero bars, integer counts, training compute totals, the summary on
an 80-column terminal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.evaluate.evaluation import EvalConfig, evaluate
from alignkit.evaluate.report import build_section, render_html, summary_table
from alignkit.evaluate.report.plots import constraints_figure
from alignkit.evaluate.report.tables import print_summary
from alignkit.evaluate.runs import load_run
from alignkit.evaluate.stats import Estimate


def _run(root: Path, name: str, eval_json: dict | None = None, metrics: list[dict] | None = None,
         samples: list[dict] | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    if eval_json is not None:
        (d / "eval.json").write_text(json.dumps(eval_json))
    if metrics is not None:
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if samples is not None:
        (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return d


def test_eval_json_holds_accuracy_by_constraint_type(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "prompt": "One word.", "constraints": [{"id": "change_case:english_lowercase", "kwargs": {}}]},
            {"id": "b", "prompt": "Say hi.", "constraints": [{"id": "keywords:existence",
                                                               "kwargs": {"keywords": ["hi"]}}]},
            {"id": "c", "prompt": "Reply.", "constraints": [{"id": "punctuation:no_comma", "kwargs": {}},
                                                             {"id": "change_case:english_lowercase", "kwargs": {}}]}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = tmp_path / "s.jsonl"
    comps = {"a": "all lowercase words", "b": "Hi there", "c": "one, two"}  # c: lowercase yes, no comma fails
    samples.write_text("".join(json.dumps({"id": k, "completion": v}) + "\n" for k, v in comps.items()))
    out = evaluate(EvalConfig(model=None, samples=str(samples), prompts=str(prompts), reward="ifeval",
                              output_dir=str(tmp_path / "run"), n_resamples=200))
    by = json.loads((tmp_path / "run" / "eval.json").read_text())["ifeval"]["by_type_strict"]
    assert out["ifeval"]["by_type_strict"] == by
    assert {k: (v["followed"], v["total"]) for k, v in by.items()} == {
        "change_case:english_lowercase": (2, 2), "keywords:existence": (1, 1), "punctuation:no_comma": (0, 1)}
    tier0 = json.loads((tmp_path / "run" / "eval.json").read_text())["ifeval"]["by_tier0_strict"]
    assert tier0["change_case"]["total"] == 2
    sec = build_section([load_run(tmp_path / "run")], "by_type")
    assert sec.table is not None
    assert [r[0] for r in sec.table[1]] == sorted(by)
    assert sec.table[1][2][1] == "0.0% (n=1)"  # no CI for a zero count of one


def test_paired_and_samples_sections(tmp_path: Path) -> None:
    d = _run(tmp_path, "tuned", {"paired_vs_baseline": {
        "constraint_accuracy": {"value": 0.125, "low": 0.0417, "high": 0.2083, "n": 48},
        "reward": {"value": -0.5, "low": -0.75, "high": -0.25, "n": 48}}},
        samples=[{"id": str(i), "prompt": f"prompt {i}", "completion": "<b>x</b>" if i == 0 else "y" * 500,
                  "reward": 1.0, "finish_reason": "length"} for i in range(7)])
    run = load_run(d)
    paired = build_section([run], "paired").table
    assert paired is not None
    assert [r[1:3] for r in paired[1]] == [["constraint_accuracy", "+12.5 [+4.2, +20.8] pt"],
                                           ["reward", "-0.5000 [-0.7500, -0.2500]"]]
    samples = build_section([run], "samples").table
    assert samples is not None and len(samples[1]) == 5
    assert samples[1][1][3] == "y" * 399 + "…" and samples[1][0][5] == "length"
    page = render_html([d])
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def test_before_after_legend_shows_both_kinds_and_zero_bars_stay_visible() -> None:
    zero = Estimate(0.0, 0.0, 0.0, 10)
    half = Estimate(0.5, 0.4, 0.6, 10)
    colors = {"a": "C0", "b": "C1"}
    fig = constraints_figure(["a", "b"], {"a": None, "b": zero}, {"a": zero, "b": half}, colors)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["before", "after"]
    heights = sorted(p.get_height() for p in ax.patches)
    assert len(heights) == 3 and heights[0] > 0  # the two zero bars are drawn, not 0-height
    assert sorted(t.get_text() for t in ax.texts) == ["0%", "0%", "50%"]


def test_counts_print_as_integers_and_training_compute_is_the_total(tmp_path: Path) -> None:
    d = _run(tmp_path, "e", {"n_prompts": 8, "reward": 0.25})
    table = build_section([load_run(d)], "headline").table
    assert table is not None
    assert dict((r[1], r[2]) for r in table[1]) == {"n_prompts": "8", "reward": "0.2500"}
    t = _run(tmp_path, "t", metrics=[{"step": s, "loss": 1.0, "tokens": 100, "seconds": 0.5} for s in (1, 2, 3)]
             + [{"step": 3, "eval/loss": 0.9}])
    (row,) = summary_table([t])
    assert row["compute"] == {"tokens": 300.0, "seconds": 1.5}


def test_summary_fits_an_80_column_terminal(tmp_path: Path) -> None:
    from rich.console import Console

    acc = {"value": 0.5, "low": 0.4, "high": 0.6, "n": 48}
    runs = [_run(tmp_path, f"run-with-a-long-name-{i}", {
        "method": "RFT, 2 rounds (LoRA)", "constraint_accuracy": acc, "reward": acc,
        "kl": {"value": 1.23, "low": 1.0, "high": 1.5, "n": 48}, "win_rate": acc,
        "paired_vs_baseline": {"constraint_accuracy": {"value": 0.125, "low": 0.0417, "high": 0.2083, "n": 48}},
        "compute": {"forward_tokens": 123456, "generated_tokens": 4567, "reward_calls": 64}}) for i in range(2)]
    console = Console(width=80, record=True, force_terminal=False)
    print_summary(summary_table(runs), console=console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for whole in ("run-with-a-long-name-0", "+12.5 [+4.2, +20.8] pt", "fwd 123.5k · gen 4.6k · rm 64",
                  "RFT, 2 rounds (LoRA)"):
        assert whole in text  # each value on one line, not folded into fragments
    wide = Console(width=250, record=True, force_terminal=False)
    print_summary(summary_table(runs), console=wide)
    assert "┃" in wide.export_text() or "│" in wide.export_text()  # a real table when it fits


@pytest.mark.parametrize("key", ["summary", "by_type", "paired", "samples", "headline"])
def test_every_section_renders_alone_with_a_note_when_empty(tmp_path: Path, key: str) -> None:
    d = _run(tmp_path, "x", {"method": "m"})
    sec = build_section([load_run(d)], key)
    assert sec.table is not None or sec.note
