"""`alignkit eval` writes a run directory with headline metrics (with CIs) that the report can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.evaluate.evaluation import EvalConfig, evaluate
from alignkit.evaluate.report import summary_table


def _write_prompts(path: Path) -> None:
    rows = [
        {"id": "a", "prompt": "Write one word.", "constraints": [{"id": "change_case:english_lowercase", "kwargs": {}}]},
        {"id": "b", "prompt": "Say hi.", "constraints": [{"id": "keywords:existence", "kwargs": {"keywords": ["hi"]}}]},
        {"id": "c", "prompt": "Reply.", "constraints": [{"id": "punctuation:no_comma", "kwargs": {}}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    p = tmp_path / "prompts.jsonl"
    _write_prompts(p)
    return p


def test_scoring_a_samples_file_gives_exact_constraint_accuracy(tmp_path: Path, prompts: Path) -> None:
    samples = tmp_path / "s.jsonl"
    completions = {"a": "this is a short reply written in plain english words", "b": "Hi there", "c": "one, two"}  # a: lowercase ok; b: has 'hi'; c: comma fails
    samples.write_text("".join(json.dumps({"id": k, "completion": v}) + "\n" for k, v in completions.items()))
    out = evaluate(EvalConfig(model=None, samples=str(samples), prompts=str(prompts), reward="ifeval",
                              output_dir=str(tmp_path / "run"), n_resamples=200))
    assert out["constraint_accuracy"]["value"] == pytest.approx(2 / 3)
    assert out["reward"]["value"] == pytest.approx(2 / 3)
    low, high = out["reward"]["low"], out["reward"]["high"]
    assert low <= 2 / 3 <= high
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in rows] == [1.0, 1.0, 0.0]


def test_win_rate_against_a_baseline_counts_ties_half(tmp_path: Path, prompts: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "samples.jsonl").write_text("".join(
        json.dumps({"id": k, "completion": "x", "reward": r}) + "\n" for k, r in (("a", 0.0), ("b", 1.0), ("c", 1.0))))
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"id": k, "completion": v}) + "\n"
                               for k, v in (("a", "this is a short reply written in plain english words"), ("b", "hi"), ("c", "a, b"))))
    out = evaluate(EvalConfig(model=None, samples=str(samples), prompts=str(prompts), reward="ifeval",
                              baseline=str(base), output_dir=str(tmp_path / "run"), n_resamples=200))
    # a: 1 vs 0 win; b: 1 vs 1 tie; c: 0 vs 1 loss -> (1 + 0.5 + 0) / 3
    assert out["win_rate"]["value"] == pytest.approx(0.5)
    assert "baseline" not in out  # the baseline directory has no eval.json to take a "before" from
    (base / "eval.json").write_text(json.dumps({"constraint_accuracy": {"value": 0.25, "low": 0.1, "high": 0.4},
                                                "reward": {"value": 0.5, "low": 0.3, "high": 0.7}}))
    out = evaluate(EvalConfig(model=None, samples=str(samples), prompts=str(prompts), reward="ifeval",
                              baseline=str(base), output_dir=str(tmp_path / "run2"), n_resamples=200))
    assert out["baseline"]["constraint_accuracy"]["value"] == 0.25 and out["baseline"]["reward"]["value"] == 0.5


def test_cli_generates_resumes_and_estimates_kl(tmp_path: Path, prompts: Path) -> None:
    run = tmp_path / "run"
    args = ["eval", "--model", "tiny-random", "--prompts", str(prompts), "--reward", "csr",
            "--reference-model", "tiny-random", "--temperature", "1", "--output-dir", str(run),
            "--set", "max_new_tokens=8", "--set", "n_resamples=100"]
    assert main(args) == 0
    first = (run / "samples.jsonl").read_text()
    headline = json.loads((run / "eval.json").read_text())
    # Policy and reference are the same seeded model, so every log-ratio is zero.
    assert headline["kl"]["value"] == pytest.approx(0.0, abs=1e-4)
    assert headline["compute"]["generated_tokens"] > 0
    assert main(args) == 0  # a rerun finds every prompt done and regenerates nothing
    assert [json.loads(x)["completion"] for x in (run / "samples.jsonl").read_text().splitlines()] == \
        [json.loads(x)["completion"] for x in first.splitlines()]
    row = summary_table([run])[0]
    assert row["constraint_accuracy"] is not None and row["kl"] is not None
