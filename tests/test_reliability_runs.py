"""Runs that never lose work (issue #14.6, 7, 8, 11, 15): a rerun without --resume refuses instead of deleting
checkpoints, export never deletes an existing directory unasked and swaps the new one in whole, two processes cannot
share a run directory (a dead holder's lock is stale and taken over), an unwritable output directory is one line
before anything loads, and a data build rebuilds an item whose last record line was torn."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from alignkit.cli import main
from alignkit.errors import ConfigError
from alignkit.rundir import LOCK_NAME, RunLockedError, lock_run_dir, replace_dir
from alignkit.train.config import TrainConfig
from alignkit.train.engine import export, train
from alignkit.train.synthetic import synthetic_sft

DATA = synthetic_sft(8)
QUIET = {"log": lambda _m: None}


def cfg(run: Path, **kw) -> TrainConfig:
    base = dict(model="tiny-random:1:32", data="<memory>", objective="sft", output_dir=str(run), batch_size=4,
                lr=1e-3, max_steps=2, save_every=1, progress=False, max_length=128)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train(cfg(tmp_path_factory.mktemp("trained") / "run"), records=DATA, **QUIET).run_dir


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- 6: a rerun never deletes a previous run
def test_rerun_without_resume_refuses_before_loading_and_keeps_checkpoints(tmp_path):
    run = tmp_path / "run"
    train(cfg(run), records=DATA, **QUIET)
    before = _snapshot(run / "checkpoints")
    # `data` points nowhere: the refusal comes before any data (or model) is read.
    with pytest.raises(ConfigError, match=r"already holds a training run \(step-1, step-2, final/\); pass --resume"):
        train(cfg(run, data=str(tmp_path / "missing.jsonl")))
    assert _snapshot(run / "checkpoints") == before
    messages: list[str] = []
    res = train(cfg(run, overwrite=True, max_steps=1), records=DATA, log=messages.append)
    assert any("--overwrite: deleting the previous run" in m for m in messages)
    assert res.loop.resumed_from == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-1"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_cli_rerun_is_one_line_and_interrupt_says_resume(tmp_path, capsys, monkeypatch, trained):
    rc = main(["train", "--output-dir", str(trained), "--model", "tiny-random:1:32", "--data",
               str(tmp_path / "missing.jsonl"), "--objective", "sft"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--resume" in err and "--overwrite" in err

    import alignkit.train.engine as engine

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "train", interrupted)
    rc = main(["train", "--output-dir", str(tmp_path / "x"), "--data", "d.jsonl", "--objective", "sft"])
    assert rc == 130 and "rerun with --resume" in capsys.readouterr().err


# ---------------------------------------------------------------- 7: export
def test_export_refuses_an_existing_dir_and_overwrite_swaps_it_in_whole(tmp_path, capsys, trained):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["export", str(trained), str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"
    assert main(["export", str(trained), str(out), "--overwrite"]) == 0
    assert not (out / "precious.txt").exists()
    assert AutoModelForCausalLM.from_pretrained(str(out)).config.num_hidden_layers == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no staging or lock files left behind
    with pytest.raises(ConfigError, match="is the run directory"):
        export(trained, trained.parent, overwrite=True)


def test_replace_dir_swaps_without_a_gap(tmp_path):
    old, new = tmp_path / "out", tmp_path / "new"
    old.mkdir()
    (old / "a").write_text("old")
    new.mkdir()
    (new / "b").write_text("new")
    replace_dir(new, old)
    assert [p.name for p in old.iterdir()] == ["b"] and not new.exists()


# ---------------------------------------------------------------- 8: one run per directory
HOLD = ("import sys; from alignkit import rundir\n"
        "with getattr(rundir, sys.argv[2])(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")


def _holder(path: Path, how: str = "lock_run_dir") -> subprocess.Popen:
    """Another process that holds the lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), how], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "RANK": "0"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_locked_run_dir_refuses_a_second_run_with_pid_and_host(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        holder = json.loads((run / LOCK_NAME).read_text())
        assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()
        with pytest.raises(RunLockedError, match=rf"is in use by pid {proc.pid} on host"):
            with lock_run_dir(run):
                pass
        rc = main(["train", "--output-dir", str(run), "--model", "tiny-random:1:32", "--data",
                   str(tmp_path / "missing.jsonl"), "--objective", "sft"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err and f"pid {proc.pid}" in err
    finally:
        proc.communicate("")
    with lock_run_dir(run, log=lambda _m: None):  # released when the holder exits
        pass
    assert not (run / LOCK_NAME).exists()


def test_the_lock_of_a_killed_holder_is_stale_and_taken_over(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / LOCK_NAME).exists()  # kill -9 leaves the file behind
    messages: list[str] = []
    with lock_run_dir(run, log=messages.append):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(messages) == 1 and f"stale lock of pid {proc.pid}" in messages[0] and "no longer running" in messages[0]


def test_the_lock_is_reentrant_in_one_process_and_released_on_error(tmp_path):
    with pytest.raises(ValueError):
        with lock_run_dir(tmp_path / "r"):
            with lock_run_dir(tmp_path / "r"):  # e.g. a pipeline that evaluates into its own run directory
                raise ValueError
    assert not (tmp_path / "r").exists()  # released, and the directory it created is not left behind empty


# ---------------------------------------------------------------- 15: unwritable output directory
@pytest.fixture
def readonly_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:  # root ignores permission bits; the immutable attribute stops root too
        immutable = subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0
    try:
        (d / "probe").write_text("")
        (d / "probe").unlink()
        pytest.skip("cannot make a directory read-only here")
    except OSError:
        pass
    yield d
    if immutable:
        subprocess.run(["chattr", "-i", str(d)], check=True)
    d.chmod(0o755)


def test_read_only_output_dir_is_one_line_before_loading(readonly_dir, tmp_path, capsys):
    rc = main(["train", "--output-dir", str(readonly_dir / "run"), "--model", "tiny-random:1:32", "--data",
               str(tmp_path / "missing.jsonl"), "--objective", "sft"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert f"cannot write to {readonly_dir}" in err and "missing.jsonl" not in err  # data was never opened


# ---------------------------------------------------------------- 11 (+8): data build
def test_build_rebuilds_an_item_whose_last_record_line_was_torn(tmp_path):
    from alignkit.data.build import RewardBuilder, SamplingSettings, items_from_prompts, run_build
    from alignkit.data.records import PromptExample
    from alignkit.decode.sampler import Compute, Sample
    from alignkit.rewards.base import FunctionReward

    class Sampler:
        compute = Compute()

        def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(),
                   seed=None):
            return [[Sample(f"{p} " + "w " * ((seed + j * 7 + len(p)) % 5), [], 0.0, "stop") for j in range(n)]
                    for p in prompts]

    def build(out: Path):
        words = FunctionReward(lambda ps, cs: [float(len(c.split())) for c in cs], name="words")
        builder = RewardBuilder(Sampler(), words, SamplingSettings(n=3), fmt="listwise", policy_name="fake")
        items = items_from_prompts([PromptExample(f"prompt {i}", metadata={"id": f"p{i}"}) for i in range(5)])
        return run_build(builder, items, out, batch_size=2, progress=False)

    straight, out = tmp_path / "straight.jsonl", tmp_path / "out.jsonl"
    build(straight)
    build(out)
    text = out.read_text()
    out.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # the progress line says done
    report = build(out)
    assert report.repaired["partial_output_lines"] == 1 and report.repaired["incomplete_items_rebuilt"] == 1
    assert report.processed == 1 and report.records_written == 1
    assert out.read_text() == straight.read_text()
    proc = _holder(out, "lock_output_file")  # a second build into an output another build holds is refused
    try:
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            build(out)
    finally:
        proc.communicate("")
