"""The training engine: it learns, resumes bit-for-bit, survives corrupt checkpoints, guards against NaN, and
picks the reference mode the objective needs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from alignkit.errors import ConfigError, TrainingError
from alignkit.models import LoraConfig
from alignkit.objectives.base import OBJECTIVES, register_objective
from alignkit.train import engine
from alignkit.train.checkpoint import latest_valid, list_checkpoints, validate_checkpoint
from alignkit.train.config import TrainConfig
from alignkit.train.engine import train
from alignkit.train.synthetic import synthetic_pairs

if "_eng_dpo" not in OBJECTIVES:
    @register_objective("_eng_dpo", data_kind="pairwise", needs_reference=True, beta=0.1)
    def _eng_dpo(lp, beta):  # DPO (spec §1.1)
        r = (lp.policy - lp.reference).detach()
        h = (lp.policy - lp.reference)[:, 0] - (lp.policy - lp.reference)[:, 1]
        return -F.logsigmoid(beta * h).mean(), {"rewards/accuracy": float((r[:, 0] > r[:, 1]).float().mean()),
                                                 "rewards/margin": float(beta * (r[:, 0] - r[:, 1]).mean())}

    @register_objective("_eng_nan", data_kind="pairwise", needs_reference=False, bad_steps=(1,))
    def _eng_nan(lp, bad_steps, state=None):
        """Non-finite on the calls listed in `bad_steps` (counted in `state`), else a plain NLL of chosen."""
        assert state is not None
        state["calls"] = state.get("calls", 0) + 1
        loss = -lp.policy[:, 0].mean() / 100
        return (loss * float("nan") if bad_steps == "all" or state["calls"] in bad_steps else loss), {}

    OBJECTIVES["_eng_nan"].defaults["state"] = None  # a stateful objective: the engine owns and checkpoints it


def cfg(tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = dict(model="tiny-random:1:32", data="<memory>", objective="_eng_dpo", output_dir=str(tmp_path / name),
                batch_size=4, lr=2e-3, max_steps=6, progress=False, max_length=128)
    base.update(kw)
    return TrainConfig(**base)


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_learning_raises_reward_accuracy_and_margin(tmp_path):
    res = train(cfg(tmp_path, "learn", max_steps=10, eval_every=5, scheduler="constant"),
                records=synthetic_pairs(16), eval_records=synthetic_pairs(8, seed=9))
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval/loss" in r]
    assert train_rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 1
    assert train_rows[-1]["rewards/accuracy"] == 1.0 and train_rows[-1]["rewards/margin"] > 0.5
    assert evals[-1]["eval/rewards/margin"] > evals[0]["eval/rewards/margin"] > 0
    assert evals[-1]["eval/loss"] < math.log(2)
    for key in ("step", "loss", "tokens", "seconds", "lr"):
        assert key in train_rows[0]
    assert res.reference == "precompute"
    assert (res.run_dir / "config.yaml").exists() and (res.run_dir / "final" / "config.json").exists()


class Stop(Exception):
    pass


def _stop_at(k: int):
    def hook(step: int) -> None:
        if step == k:
            raise Stop

    return hook


def test_resume_reproduces_uninterrupted_losses_bit_for_bit(tmp_path):
    data = synthetic_pairs(12)
    full = train(cfg(tmp_path, "full", save_every=2, warmup_steps=2, epochs=2, max_steps=0), records=data)
    with pytest.raises(Stop):
        train(cfg(tmp_path, "cut", save_every=2, warmup_steps=2, epochs=2, max_steps=0), records=data,
              on_checkpoint=_stop_at(2))
    resumed = train(cfg(tmp_path, "cut", save_every=2, warmup_steps=2, epochs=2, max_steps=0, resume=True),
                    records=data)
    assert full.steps == resumed.steps == 6  # 12 examples / 4 per batch × 2 epochs
    assert losses(full.run_dir) == losses(resumed.run_dir)  # exact float equality
    a = torch.load(full.run_dir / "checkpoints" / "step-6" / "optimizer.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "checkpoints" / "step-6" / "optimizer.pt", weights_only=True)
    assert all(torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"]) for k in a["state"])


def test_corrupt_and_half_written_checkpoints_are_skipped(tmp_path):
    data = synthetic_pairs(8)
    ref = train(cfg(tmp_path, "ref", save_every=1, keep_checkpoints=0), records=data)
    with pytest.raises(Stop):
        train(cfg(tmp_path, "bad", save_every=1, keep_checkpoints=0), records=data, on_checkpoint=_stop_at(4))
    root = tmp_path / "bad" / "checkpoints"
    assert [p.name for p in list_checkpoints(root)] == ["step-1", "step-2", "step-3", "step-4"]
    # step-4: a truncated weights file; step-3: half-written (no completion marker).
    weights = root / "step-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (root / "step-3" / "COMPLETE").unlink()
    assert "bytes" in (validate_checkpoint(root / "step-4") or "")
    assert "marker" in (validate_checkpoint(root / "step-3") or "")
    messages: list[str] = []
    assert latest_valid(root, log=messages.append) == root / "step-2"
    assert len(messages) == 2
    resumed = train(cfg(tmp_path, "bad", save_every=1, keep_checkpoints=0, resume=True), records=data)
    assert losses(resumed.run_dir) == losses(ref.run_dir)


def test_nan_guard_skips_counts_and_stops(tmp_path):
    data = synthetic_pairs(8)
    res = train(cfg(tmp_path, "skip", objective="_eng_nan", max_steps=4), records=data)
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0].get("skipped") is True and rows[0]["loss"] is None
    assert all(not r.get("skipped") for r in rows[1:]) and res.loop.skipped_steps == 1
    with pytest.raises(TrainingError, match="3 optimiser steps in a row"):
        train(cfg(tmp_path, "stop", objective="_eng_nan", max_steps=6, max_bad_steps=3,
                  objective_args={"bad_steps": "all"}), records=data)


def test_objective_state_is_checkpointed(tmp_path):
    res = train(cfg(tmp_path, "state", objective="_eng_nan", max_steps=3, objective_args={"bad_steps": []}),
                records=synthetic_pairs(8))
    state = json.loads((res.run_dir / "checkpoints" / "step-3" / "state.json").read_text())
    assert state["objective_state"] == {"calls": 3}


@pytest.mark.parametrize("mode", ["adapter", "separate"])
def test_reference_modes_start_at_log2(tmp_path, mode):
    lora = LoraConfig(r=4, alpha=8) if mode == "adapter" else LoraConfig()
    res = train(cfg(tmp_path, mode, reference=mode, lora=lora, max_steps=2), records=synthetic_pairs(8))
    assert res.reference == mode
    assert losses(res.run_dir)[0] == pytest.approx(math.log(2), abs=1e-5)
    assert losses(res.run_dir)[1] < math.log(2)
    if mode == "adapter":
        assert (res.run_dir / "final" / "adapter_config.json").exists()
        assert (res.run_dir / "checkpoints" / "step-2" / "adapter.safetensors").exists()


def test_memory_savers_do_not_change_the_run(tmp_path, monkeypatch):
    """An offloaded reference, gradient checkpointing and the low-memory allocator trade speed for memory; the
    losses stay the same."""
    plain = losses(train(cfg(tmp_path, "plain", reference="separate", max_steps=3),
                         records=synthetic_pairs(8)).run_dir)
    logs: list[str] = []
    offloaded = train(cfg(tmp_path, "offload", reference="separate", reference_offload=True, max_steps=3),
                      records=synthetic_pairs(8), log=logs.append)
    assert any("offloaded" in m for m in logs)
    assert losses(offloaded.run_dir) == pytest.approx(plain, abs=1e-6)
    assert not list(offloaded.run_dir.glob(".reference-offload*"))  # the weights on disk are removed at the end
    layer_calls: dict[str, int] = {}

    def count(module, args, out):  # noqa: ANN001
        if type(module).__name__.endswith("Attention") and module.training:
            layer_calls[run_name] = layer_calls.get(run_name, 0) + 1

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        for run_name, kw in (("no-ckpt", {}), ("ckpt", {"gradient_checkpointing": True})):
            run = train(cfg(tmp_path, run_name, reference="separate", max_steps=3, **kw), records=synthetic_pairs(8))
            assert losses(run.run_dir) == pytest.approx(plain, abs=1e-5)
    finally:
        handle.remove()
    assert layer_calls["ckpt"] == 2 * layer_calls["no-ckpt"]  # checkpointed layers run again during backward
    called: list[bool] = []
    monkeypatch.setattr(engine, "release_large_frees", lambda: called.append(True) or True)
    lowmem = train(cfg(tmp_path, "lowmem", reference="separate", low_memory_allocator=True, max_steps=3),
                   records=synthetic_pairs(8))
    assert called and losses(lowmem.run_dir) == pytest.approx(plain, abs=1e-6)
    with pytest.raises(ConfigError, match="reference_offload applies to reference: separate"):
        train(cfg(tmp_path, "bad", reference="precompute", reference_offload=True), records=synthetic_pairs(8))


def test_precompute_cache_is_reused(tmp_path, monkeypatch):
    import alignkit.train.reference as reference

    monkeypatch.setattr(reference, "cache_dir", lambda: tmp_path / "cache")
    logs: list[str] = []
    train(cfg(tmp_path, "a", max_steps=1), records=synthetic_pairs(8), log=logs.append)
    assert any("cached at" in m for m in logs)
    logs.clear()
    train(cfg(tmp_path, "b", max_steps=1), records=synthetic_pairs(8), log=logs.append)
    assert any("reusing cache" in m for m in logs)
    assert len(list((tmp_path / "cache" / "reference").glob("*.safetensors"))) == 1


def test_bad_config_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="adapter needs LoRA"):
        train(cfg(tmp_path, "x", reference="adapter"), records=synthetic_pairs(8))
    with pytest.raises(ConfigError, match="does not take"):
        train(cfg(tmp_path, "y", objective_args={"bogus": 1}), records=synthetic_pairs(8))
    with pytest.raises(ConfigError, match="cannot fill one global batch"):
        train(cfg(tmp_path, "z", batch_size=16), records=synthetic_pairs(8))


def test_low_memory_allocator_is_available_on_glibc():
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    code = "from alignkit.train.memory import release_large_frees; assert release_large_frees()"
    subprocess.run([sys.executable, "-c", code], check=True)  # a child process: the policy is process-wide


def _padded_tokens(batches: list[list[int]]) -> int:
    return sum(max(b) * len(b) for b in batches)


def test_group_by_length_puts_similar_lengths_in_a_batch_and_keeps_the_epoch_random() -> None:
    from alignkit.train.loop import epoch_order

    lengths = [(7 * i) % 23 + 1 for i in range(40)]
    order = epoch_order(40, 0, seed=3, shuffle=True, lengths=lengths, batch=4, mega_batches=5)
    assert sorted(order) == list(range(40))  # every example once
    batches = [[lengths[i] for i in order[k:k + 4]] for k in range(0, 40, 4)]
    plain = epoch_order(40, 0, seed=3, shuffle=True)
    assert _padded_tokens(batches) < 0.8 * _padded_tokens([[lengths[i] for i in plain[k:k + 4]]
                                                           for k in range(0, 40, 4)])
    for mega in (order[:20], order[20:]):  # a mega-batch of 5 batches cut from its length-sorted examples
        cut = [sorted((lengths[i] for i in mega), reverse=True)[k:k + 4] for k in range(0, 20, 4)]
        assert sorted(map(sorted, ([lengths[i] for i in mega[k:k + 4]] for k in range(0, 20, 4)))) == \
            sorted(map(sorted, cut))
    assert order == epoch_order(40, 0, seed=3, shuffle=True, lengths=lengths, batch=4, mega_batches=5)  # resumable
    assert order != epoch_order(40, 1, seed=3, shuffle=True, lengths=lengths, batch=4, mega_batches=5)


def test_group_by_length_reaches_the_batches_the_engine_pads(tmp_path, monkeypatch):
    from alignkit.data.records import SFTExample

    padded: dict[bool, int] = {}
    real = engine.collate

    def spy(data, indices, *a, **k):  # noqa: ANN001, ANN002, ANN003
        padded[key] += max(len(s.input_ids) for i in indices for s in data.examples[i].seqs) * len(indices)
        return real(data, indices, *a, **k)

    monkeypatch.setattr(engine, "collate", spy)
    records = [SFTExample(f"Question {i}?", " ".join(["word"] * ((11 * i) % 37 + 1))) for i in range(32)]
    for key in (False, True):
        padded[key] = 0
        train(cfg(tmp_path, f"g{key}", objective="sft", epochs=1, max_steps=0, group_by_length=key), records=records)
    assert padded[True] < 0.9 * padded[False]  # the prompts (chat template included) are ~30 tokens of each
