"""Checkpoints prove their integrity (issue #14.10, #14.12): every file's SHA-256 is in the manifest, flipped bytes
are caught on resume, the run falls back to the previous good checkpoint and then ends exactly as an uninterrupted
run (DESIGN.md "Runs": `--resume` continues bit-for-bit on CPU); what a killed run left is cleaned up; a run whose
loss never recovers from NaN fails instead of writing NaN weights to final/."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignkit.errors import TrainingError
from alignkit.objectives.base import OBJECTIVES, register_objective
from alignkit.train.checkpoint import MARKER, list_checkpoints, validate_checkpoint, write_manifest
from alignkit.train.config import TrainConfig
from alignkit.train.engine import train
from alignkit.train.synthetic import synthetic_pairs

DATA = synthetic_pairs(8)

if "_rel_nll" not in OBJECTIVES:
    @register_objective("_rel_nll", data_kind="pairwise", needs_reference=False, nan_from=0)
    def _rel_nll(lp, nan_from, state=None):
        """NLL of the chosen answer; from optimiser call `nan_from` on (if > 0) the loss is NaN for good."""
        assert state is not None
        state["calls"] = state.get("calls", 0) + 1
        loss = -lp.policy[:, 0].mean() / 100
        return (loss * float("nan") if nan_from and state["calls"] >= nan_from else loss), {}

    OBJECTIVES["_rel_nll"].defaults["state"] = None


class Stop(Exception):
    """Stands in for kill -9 right after a checkpoint."""


def cfg(run: Path, **kw) -> TrainConfig:
    base = dict(model="tiny-random:1:32", data="<memory>", objective="_rel_nll", output_dir=str(run), batch_size=4,
                lr=5e-3, max_steps=4, save_every=1, keep_checkpoints=2, progress=False, max_length=128)
    base.update(kw)
    return TrainConfig(**base)


def stop_at(k: int):
    def hook(step: int) -> None:
        if step == k:
            raise Stop

    return hook


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    return train(cfg(tmp_path_factory.mktemp("ref") / "run"), records=DATA, log=lambda _m: None).run_dir


def test_manifest_holds_the_sha256_of_every_file(uninterrupted):
    step = uninterrupted / "checkpoints" / "step-4"
    manifest = json.loads((step / MARKER).read_text())
    assert manifest["format"] == 2
    names = {p.name for p in step.iterdir()} - {MARKER}
    assert set(manifest["files"]) == names >= {"model.safetensors", "optimizer.pt", "scheduler.pt", "state.json"}
    for name, entry in manifest["files"].items():
        data = (step / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def flip(path: Path, n: int = 64) -> None:
    """Invert `n` bytes in the middle of the file: same size, so a size check cannot see it."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.pt"])
def test_kill_corrupt_resume_falls_back_and_ends_bit_for_bit(tmp_path, uninterrupted, victim):
    run = tmp_path / "run"
    with pytest.raises(Stop):
        train(cfg(run), records=DATA, on_checkpoint=stop_at(3), log=lambda _m: None)
    root = run / "checkpoints"
    assert [p.name for p in list_checkpoints(root)] == ["step-2", "step-3"]
    flip(root / "step-3" / victim)
    assert "SHA-256" in (validate_checkpoint(root / "step-3") or "")
    # What a kill in the middle of writing leaves: temp dirs and a torn last metrics line.
    (root / ".tmp-step-4-abc").mkdir()
    (root / ".tmp-step-4-abc" / "model.safetensors").write_bytes(b"half")
    (run / ".final-xyz").mkdir()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "loss": 0.6')

    messages: list[str] = []
    res = train(cfg(run, resume=True), records=DATA, log=messages.append)
    text = "\n".join(messages)
    assert f"{victim} does not match its SHA-256" in text and "falling back" in text
    assert "resumed from" in text and "step-2" in text
    assert "torn last line" in text and "removed 2 temporary directories" in text
    assert not (root / ".tmp-step-4-abc").exists() and not (run / ".final-xyz").exists()
    assert (root / "step-3.corrupt").is_dir()  # kept for inspection, not silently deleted
    assert res.steps == 4 and res.loop.resumed_from == 2
    assert losses(run) == losses(uninterrupted)  # exact float equality
    a = load_file(str(uninterrupted / "final" / "model.safetensors"))
    b = load_file(str(run / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


KILL_AT_3 = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import test_reliability_checkpoints as t
def kill(step):
    if step == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill -9: no finally blocks, no lock release
t.train(t.cfg(t.Path(sys.argv[1])), records=t.DATA, on_checkpoint=kill, log=lambda _m: None)
"""


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_3, str(run), str(Path(__file__).parent)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (run / ".alignkit.lock").exists() and not (run / "final").exists()
    messages: list[str] = []
    res = train(cfg(run, resume=True), records=DATA, log=messages.append)
    assert any("stale lock" in m and "no longer running" in m for m in messages)
    assert res.loop.resumed_from == 3 and losses(run) == losses(uninterrupted)
    a = load_file(str(uninterrupted / "final" / "model.safetensors"))
    b = load_file(str(run / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_torn_line_in_the_middle_of_metrics_is_an_error_with_its_line(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Stop):
        train(cfg(run, max_steps=2), records=DATA, on_checkpoint=stop_at(2), log=lambda _m: None)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0][:10] + "\n" + lines[1] + "\n")
    with pytest.raises(TrainingError, match=r"metrics\.jsonl:1: not a metrics record"):
        train(cfg(run, max_steps=2, resume=True), records=DATA, log=lambda _m: None)


def test_loss_that_never_recovers_from_nan_fails_without_final(tmp_path):
    # Calls 1-2 are fine, from call 3 on the loss is NaN; 4 steps end before max_bad_steps (5) would stop the run.
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match="never recovered"):
        train(cfg(run, objective_args={"nan_from": 3}), records=DATA, log=lambda _m: None)
    assert not (run / "final").exists()
    # A run with a NaN step that then recovers is still a success (the step was skipped).
    ok = train(cfg(tmp_path / "ok", max_steps=2, save_every=0, objective_args={"nan_from": 0}), records=DATA,
               log=lambda _m: None)
    assert (ok.run_dir / "final").exists()


def test_nan_weights_are_never_checkpointed(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Stop):
        train(cfg(run), records=DATA, on_checkpoint=stop_at(2), log=lambda _m: None)
    # Not disk corruption (the manifest is rewritten to match): an optimiser state holding NaN, as a bug would.
    step = run / "checkpoints" / "step-2"
    opt = torch.load(step / "optimizer.pt", weights_only=True)
    for s in opt["state"].values():
        s["exp_avg"].fill_(float("nan"))
    torch.save(opt, step / "optimizer.pt")
    (step / MARKER).unlink()
    write_manifest(step)
    with pytest.raises(TrainingError, match="weights are not finite"):
        train(cfg(run, resume=True), records=DATA, log=lambda _m: None)
    assert not (run / "final").exists()
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-1", "step-2"]
