"""`alignkit train --on-bad-record {error,skip}` (issue #14.5): the same policy as `alignkit data validate`; with
skip the counts and every FILE:LINE reason are printed and written to the run directory's data_skipped.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.train.synthetic import synthetic_pairs


@pytest.fixture
def pairs_with_bad_lines(tmp_path: Path) -> Path:
    rows = [json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) for p in synthetic_pairs(4)]
    rows.insert(1, json.dumps({"prompt": "Hi", "chosen": "Same", "rejected": "Same"}))  # line 2
    rows.insert(3, '{"prompt": "Hi", "chosen": "a", "rejected": "b", "chosen": "c"}')  # line 4
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _train(data: Path, run: Path, *extra: str) -> int:
    return main(["train", "--model", "tiny-random:1:32", "--data", str(data), "--objective", "dpo",
                 "--output-dir", str(run), "--set", "max_steps=1", "--set", "batch_size=4", "--set",
                 "progress=false", *extra])


def test_train_stops_at_the_first_bad_record_by_default(pairs_with_bad_lines: Path, tmp_path: Path,
                                                        capsys) -> None:
    assert _train(pairs_with_bad_lines, tmp_path / "run") == 2
    assert f"{pairs_with_bad_lines}:2: field 'rejected': chosen is identical to rejected" in capsys.readouterr().err
    assert not (tmp_path / "run" / "data_skipped.json").exists()


def test_train_skip_reports_counts_and_locations_in_the_run_directory(pairs_with_bad_lines: Path,
                                                                      tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(pairs_with_bad_lines, run, "--on-bad-record", "skip") == 0
    out = capsys.readouterr().out
    assert f"{pairs_with_bad_lines}: 4 pairwise records, 2 bad records skipped" in out
    report = json.loads((run / "data_skipped.json").read_text())
    assert report["policy"] == "skip"
    (file,) = report["files"]
    assert (file["source"], file["records"], file["skipped"]) == (str(pairs_with_bad_lines), 4, 2)
    assert [r["where"] for r in file["skipped_records"]] == [f"{pairs_with_bad_lines}:2", f"{pairs_with_bad_lines}:4"]
    assert file["skipped_records"][1]["reason"].startswith("field 'chosen': duplicate key")
    assert sum(file["skipped_by_reason"].values()) == 2
