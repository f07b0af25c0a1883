"""One run per directory and no silent restart, for `alignkit eval` and online RL too (issue #14.6, 14.8): a locked
directory is refused with one line naming the holder's PID before anything loads, and an online-RL rerun into a
directory with checkpoints needs --resume or --overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.errors import ConfigError
from alignkit.rl.trainer import run_online
from alignkit.rundir import LOCK_NAME, RunLockedError
from online_helpers import QUIET, length_reward, online_cfg


def _prompt_file(path: Path) -> Path:
    path.write_text('{"prompt": "Say something."}\n{"prompt": "Hello!"}\n', encoding="utf-8")
    return path


HOLD = ("import sys; from alignkit import rundir\n"
        "with rundir.lock_run_dir(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")


@pytest.fixture
def held(tmp_path: Path):
    """A run directory whose lock another live process holds until the test ends."""
    run = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "RANK": "0"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield run, proc.pid
    proc.communicate("")


def test_online_rl_refuses_a_locked_dir_before_loading_anything(held, tmp_path: Path, capsys) -> None:
    run, pid = held
    missing = str(tmp_path / "missing.jsonl")  # never read: the lock is the first thing taken
    with pytest.raises(RunLockedError, match=rf"is in use by pid {pid} on host"):
        run_online(online_cfg(run, missing), reward=length_reward(), **QUIET)
    rc = main(["train", "--objective", "grpo", "--model", "tiny-random", "--data", missing, "--output-dir", str(run)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and f"pid {pid}" in err
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == pid  # the holder's lock is untouched


def test_eval_refuses_a_locked_dir_with_one_line_naming_the_pid(held, tmp_path: Path, capsys) -> None:
    run, pid = held
    rc = main(["eval", "--model", "tiny-random", "--prompts", str(tmp_path / "missing.jsonl"), "--output-dir",
               str(run)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and f"pid {pid}" in err
    assert not (run / "samples.jsonl").exists() and not (run / "config.yaml").exists()


def test_online_rl_rerun_over_checkpoints_needs_resume_or_overwrite(tmp_path: Path) -> None:
    data = _prompt_file(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    run_online(online_cfg(run, str(data)), reward=length_reward(), **QUIET)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints" / "step-1").iterdir() if p.is_file()}
    # `data` points nowhere: the refusal comes before any prompt (or model) is read.
    with pytest.raises(ConfigError, match=r"already holds a training run \(step-1, final/\); pass --resume"):
        run_online(online_cfg(run, str(tmp_path / "missing.jsonl")), reward=length_reward(), **QUIET)
    assert {p.name: p.read_bytes() for p in (run / "checkpoints" / "step-1").iterdir() if p.is_file()} == before
    messages: list[str] = []
    res = run_online(online_cfg(run, str(data), overwrite=True), reward=length_reward(),
                     log=messages.append)
    assert res.steps == 1 and any("--overwrite: deleting the previous run" in m for m in messages)
