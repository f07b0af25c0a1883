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
from alignkit.rewards.base import FunctionReward
from alignkit.rl.trainer import run_online
from alignkit.rundir import LOCK_NAME, RunLockedError
from alignkit.train.config import TrainConfig

QUIET = {"log": lambda _m: None}


def _length_reward() -> FunctionReward:
    return FunctionReward(lambda prompts, completions, **_: [float(len(c)) for c in completions], name="length")


def _cfg(out: Path, data: str, **kw: object) -> TrainConfig:
    args = dict(num_generations=2, max_new_tokens=3, temperature=1.0, top_k=8)
    base = dict(model="tiny-random", objective="grpo", data=data, output_dir=str(out), batch_size=2, lr=1e-2,
                max_steps=1, save_every=1, scheduler="constant", beta=0.0, progress=False, objective_args=args,
                torch_threads=1)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


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
        run_online(_cfg(run, missing), reward=_length_reward(), **QUIET)
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
    run_online(_cfg(run, str(data)), reward=_length_reward(), **QUIET)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints" / "step-1").iterdir() if p.is_file()}
    # `data` points nowhere: the refusal comes before any prompt (or model) is read.
    with pytest.raises(ConfigError, match=r"already holds a training run \(step-1, final/\); pass --resume"):
        run_online(_cfg(run, str(tmp_path / "missing.jsonl")), reward=_length_reward(), **QUIET)
    assert {p.name: p.read_bytes() for p in (run / "checkpoints" / "step-1").iterdir() if p.is_file()} == before
    messages: list[str] = []
    res = run_online(_cfg(run, str(data), overwrite=True), reward=_length_reward(),
                     log=messages.append)
    assert res.steps == 1 and any("--overwrite: deleting the previous run" in m for m in messages)
