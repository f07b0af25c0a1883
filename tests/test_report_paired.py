"""The summary table shows each run's paired accuracy gain over the base, in points with its interval."""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.evaluate.report import format_summary, summary_table


def _run(root: Path, name: str, eval_json: dict) -> Path:
    d = root / name
    d.mkdir()
    (d / "eval.json").write_text(json.dumps({"method": name, **eval_json}))
    return d


def test_paired_gain_column_reads_paired_vs_baseline(tmp_path: Path) -> None:
    acc = {"value": 0.5, "low": 0.4, "high": 0.6, "n": 48}
    base = _run(tmp_path, "base", {"constraint_accuracy": acc})
    trained = _run(tmp_path, "trained", {"constraint_accuracy": acc, "paired_vs_baseline": {
        "constraint_accuracy": {"value": 0.125, "low": 0.0417, "high": 0.2083, "n": 48}}})
    header, body = format_summary(summary_table([base, trained]))
    col = header.index("Δ acc. vs base (paired)")
    assert body[0][col] == "—"
    assert body[1][col] == "+12.5 [+4.2, +20.8] pt"
