"""Online RL resume reads `samples.jsonl` with the rule `metrics.jsonl` follows (issue #14): a torn last line (the
run was killed while writing it) is cut off with a note; an unparseable line elsewhere is an error at FILE:LINE."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from alignkit.data.records import PromptExample
from alignkit.errors import TrainingError
from alignkit.rewards.base import FunctionReward
from alignkit.rl.trainer import run_online
from alignkit.train.config import TrainConfig

PROMPTS = [PromptExample(p) for p in ("Say something.", "Hello!")]


def _length_reward() -> FunctionReward:
    return FunctionReward(lambda prompts, completions, **_: [float(len(c)) for c in completions], name="length")


def _run(out: Path, resume: bool = False, log: list[str] | None = None) -> None:
    args = dict(num_generations=2, max_new_tokens=4, temperature=1.0, top_k=8)
    cfg = TrainConfig(model="tiny-random", objective="grpo", output_dir=str(out), batch_size=2, lr=1e-2,
                      max_steps=2, save_every=1, scheduler="constant", beta=0.0, progress=False,
                      objective_args=args, resume=resume, torch_threads=1)
    run_online(cfg, reward=_length_reward(), prompts=PROMPTS, log=(log.append if log is not None else lambda _m: None))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rl") / "full"
    _run(out)
    return out


def _killed_after_step_1(full_run: Path, to: Path) -> Path:
    """The run directory as a run killed during step 2 leaves it: step 2's checkpoint never written."""
    shutil.copytree(full_run, to)
    shutil.rmtree(to / "checkpoints" / "step-2")
    shutil.rmtree(to / "final")
    return to


def test_resume_cuts_a_torn_last_sample_line_and_continues(full_run: Path, tmp_path: Path) -> None:
    run = _killed_after_step_1(full_run, tmp_path / "cut")
    samples = run / "samples.jsonl"
    text = samples.read_text(encoding="utf-8")
    samples.write_text(text[:-15], encoding="utf-8")  # the write of the last line stopped half-way
    log: list[str] = []
    _run(run, resume=True, log=log)  # before: json.loads raised on the torn line
    assert any(f"{samples}:" in m and "torn last line" in m for m in log), log
    assert samples.read_text(encoding="utf-8") == text  # the resumed run rewrote step 2's samples exactly


def test_resume_stops_at_a_damaged_sample_line_that_is_not_the_last(full_run: Path, tmp_path: Path) -> None:
    run = _killed_after_step_1(full_run, tmp_path / "bad")
    samples = run / "samples.jsonl"
    lines = samples.read_text(encoding="utf-8").split("\n")
    assert json.loads(lines[0])["step"] == 1 and len([ln for ln in lines if ln]) >= 2
    samples.write_text("\n".join(["{not json", *lines[1:]]), encoding="utf-8")
    with pytest.raises(TrainingError, match=rf"{samples}:1: not a sample record .*repair or delete that line"):
        _run(run, resume=True)


def test_a_resumed_run_swaps_its_final_model_in_without_a_gap(full_run: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "again"
    shutil.copytree(full_run, run)
    shutil.rmtree(run / "checkpoints" / "step-2")  # final/ of the first attempt is still there
    real_rmtree = shutil.rmtree
    seen: list[bool] = []

    def watched_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        real_rmtree(path, *args, **kwargs)
        seen.append((run / "final" / "config.json").exists())  # after every deletion, a whole model is there

    monkeypatch.setattr(shutil, "rmtree", watched_rmtree)
    _run(run, resume=True)
    assert seen and all(seen), seen  # before: final/ was deleted, then the new directory renamed in
    assert (run / "final" / "model.safetensors").exists()
