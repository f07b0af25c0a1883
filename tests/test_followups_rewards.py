"""Reward-model training guards its run directory as `alignkit train` does (issue #14): the directory is locked for
the whole run, and a fresh run into a directory that holds a previous run is refused unless --resume or
--overwrite says what to do with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.rewards.training import RewardTrainConfig, train_reward_model
from alignkit.rundir import RunLockedError


def _pairs(path: Path, n: int = 8) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"Say #{i}.", "chosen": "river stone banana",
                                        "rejected": "river stone"}) + "\n" for i in range(n)))
    return path


def _train(data: Path, run: Path, *flags: str) -> int:
    return main(["reward", "train", "--model", "tiny-random", "--data", str(data), "--output-dir", str(run),
                 "--max-steps", "1", "--set", "batch_size=4", "--set", "max_length=32", "--set", "progress=false",
                 "--set", "torch_threads=1", *flags])


def test_a_second_reward_run_into_the_same_directory_needs_resume_or_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = _pairs(tmp_path / "pairs.jsonl"), tmp_path / "run"
    assert _train(data, run) == 0
    first = (run / "final" / "config.json").stat().st_mtime_ns
    capsys.readouterr()

    assert _train(data, run) == 2  # before: silently trained again over the previous run
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "--overwrite" in err
    assert (run / "final" / "config.json").stat().st_mtime_ns == first  # the previous run is untouched

    assert _train(data, run, "--overwrite") == 0
    assert "--overwrite: deleting the previous run" in capsys.readouterr().out
    assert (run / "checkpoints" / "step-1").is_dir() and (run / "final" / "config.json").exists()


HOLD = ("import sys; from alignkit.rundir import lock_run_dir\n"
        "with lock_run_dir(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")


def test_a_reward_run_refuses_a_directory_another_process_holds(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "RANK": "0"})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        cfg = RewardTrainConfig(model="tiny-random", data="<memory>", output_dir=str(run), progress=False)
        with pytest.raises(RunLockedError, match="is in use by pid"):
            train_reward_model(cfg, records=[])  # refused before anything is read or loaded
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
