"""`--overwrite` removes every output of the previous run, including its skip report, and nothing else."""

from __future__ import annotations

from pathlib import Path

from alignkit.train.checkpoint import prepare_run_dir


def test_overwrite_removes_the_previous_skip_report_and_keeps_user_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "data_skipped.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    prepare_run_dir(run, resume=False, overwrite=True, log=lambda _m: None)
    assert not (run / "final").exists() and not (run / "data_skipped.json").exists()
    assert (run / "notes.txt").read_text() == "mine"
