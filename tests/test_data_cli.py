"""`alignkit data validate|convert|stats` through `alignkit.cli.main` (and once through the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data.io import read_records, sample_path, write_jsonl
from alignkit.data.records import PairwiseExample

GOOD = {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [GOOD, {"prompt": "Hi", "chosen": "Same", "rejected": "Same"}, GOOD,
                       {"prompt": "Hi", "chosen": "x"}])
    return path


def test_validate_prints_file_line_field_for_each_bad_record_and_exits_1(bad_file: Path, capsys) -> None:
    assert main(["data", "validate", str(bad_file), "--kind", "pairwise"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{bad_file}:2: field 'rejected': chosen is identical to rejected",
                                f"{bad_file}:4: field 'rejected': missing field"]
    assert "2 of 4 records are bad" in err


def test_validate_skip_mode_reports_counts_and_exits_0(bad_file: Path, capsys) -> None:
    assert main(["data", "validate", str(bad_file), "--on-bad-record", "skip"]) == 0
    out = capsys.readouterr().out
    assert "2 pairwise records, 2 bad records skipped" in out
    assert "1 × field 'rejected': missing field" in out


def test_validate_good_file(capsys) -> None:
    assert main(["data", "validate", str(sample_path("listwise"))]) == 0
    assert "8 listwise records, all valid" in capsys.readouterr().out


def test_validate_unreadable_file_exits_1(tmp_path: Path, capsys) -> None:
    (tmp_path / "d.json").write_text("[{")
    assert main(["data", "validate", str(tmp_path / "d.json")]) == 1
    assert f"{tmp_path / 'd.json'}:1: bad JSON" in capsys.readouterr().out


def test_validate_through_the_console_script(bad_file: Path) -> None:
    script = Path(sys.executable).parent / "alignkit"
    proc = subprocess.run([str(script), "data", "validate", str(bad_file)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert f"{bad_file}:2: field 'rejected': chosen is identical to rejected" in proc.stdout


def test_convert_writes_readable_records(tmp_path: Path, capsys) -> None:
    out = tmp_path / "pairs.jsonl"
    rc = main(["data", "convert", str(sample_path("listwise")), str(out), "--to", "pairwise",
               "--mode", "best-vs-worst", "--with-margin"])
    assert rc == 0
    records = read_records(out, "pairwise").records
    assert len(records) == 8 and all(isinstance(r, PairwiseExample) and r.margin > 0 for r in records)
    captured = capsys.readouterr()
    assert "wrote 8 pairwise records" in captured.out
    assert "listwise -> pairwise (best-vs-worst): 8 records in, 8 out" in captured.err


def test_convert_with_weights(tmp_path: Path) -> None:
    src = tmp_path / "scored.jsonl"
    write_jsonl(src, [{"prompt": "p", "completion": "a", "attributes": {"h": 1, "v": 0}},
                      {"prompt": "p", "completion": "b", "attributes": {"h": 0, "v": 4}}])
    assert main(["data", "convert", str(src), str(tmp_path / "l.jsonl"), "--to", "listwise",
                 "--weights", "h=1,v=-0.5"]) == 0
    (record,) = read_records(tmp_path / "l.jsonl").records
    assert record.scores == [1.0, -2.0]
    assert main(["data", "convert", str(src), str(tmp_path / "x.jsonl"), "--to", "listwise",
                 "--weights", "h"]) == 2  # a ConfigError: one clear line, exit 2


def test_stats_counts_without_tokens(capsys) -> None:
    assert main(["data", "stats", str(sample_path("unpaired")), "--no-tokens", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 8 and stats["kinds"] == {"unpaired": 8} and stats["skipped"] == 0
    assert stats["details"]["labels"] == "5 desirable, 3 undesirable"


def test_stats_token_lengths_and_truncation(capsys) -> None:
    assert main(["data", "stats", str(sample_path("pairwise")), "--model", "tiny-random", "--max-length", "48",
                 "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["prompt_tokens"]["count"] == 16 and stats["completion_tokens"]["count"] == 32
    assert stats["prompt_tokens"]["min"] <= stats["prompt_tokens"]["p50"] <= stats["prompt_tokens"]["max"]
    trunc = stats["truncation"]
    assert trunc["sequences"] == 32 and 0 < trunc["over_max_length"] < 32
    assert trunc["prompt_truncated"] + trunc["completion_truncated"] >= trunc["over_max_length"]


def test_every_data_action_has_help_with_examples(capsys) -> None:
    for action in ("validate", "convert", "stats"):
        with pytest.raises(SystemExit) as info:
            main(["data", action, "--help"])
        assert info.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_validate_empty_input_exits_1_unless_allow_empty(tmp_path: Path, capsys) -> None:
    path = tmp_path / "header_only.csv"
    path.write_text("prompt,chosen,rejected\n")
    assert main(["data", "validate", str(path)]) == 1
    assert f"{path}: empty input: no records found" in capsys.readouterr().out
    assert main(["data", "validate", str(path), "--on-bad-record", "skip"]) == 1
    assert main(["data", "validate", str(path), "--kind", "pairwise", "--allow-empty"]) == 0
    assert "0 pairwise records, all valid" in capsys.readouterr().out
