"""The online loop on the tiny random model: a verifiable reward rises, and resume reproduces metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from alignkit.data.records import PromptExample
from alignkit.models import LoraConfig, load_model
from alignkit.rewards.base import FunctionReward
from alignkit.rl.trainer import run_online, step_prompts
from alignkit.train.config import TrainConfig

PROMPTS = [PromptExample(p) for p in ("Say something.", "Hello!", "Write a word.", "Count to three.")]
TIMING = {"rollout_s", "update_s", "step_s"}


def vowel_reward() -> FunctionReward:
    """Fraction of a completion's letters that are vowels: verifiable, never constant within a group (so every
    step carries signal), and learnable by a 2-layer random model, which only has to up-weight the vowel-rich
    tokens among its top-k candidates."""

    def fn(prompts, completions, **_):
        out = []
        for c in completions:
            letters = [ch for ch in c.lower() if ch.isalpha()]
            out.append(sum(ch in "aeiou" for ch in letters) / max(1, len(letters)))
        return out

    return FunctionReward(fn, name="vowels")


def config(out: Path, **kw) -> TrainConfig:
    args = dict(num_generations=8, max_new_tokens=8, temperature=1.0, top_k=8)
    args.update(kw.pop("objective_args", {}))
    base = dict(model="tiny-random", objective="grpo", output_dir=str(out), batch_size=4, lr=1e-2, max_steps=12,
                scheduler="constant", beta=0.0, progress=False, objective_args=args)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("objective, beta", [("grpo", 0.0), ("rloo", 0.01)])
def test_mean_reward_rises_on_a_verifiable_task(tmp_path: Path, objective: str, beta: float) -> None:
    """RLOO runs with its KL-in-reward (β > 0, a separate reference model): the reward still rises."""
    torch.manual_seed(0)
    model, tok = load_model("tiny-random", seed=0)
    reward = vowel_reward()
    res = run_online(config(tmp_path, objective=objective, beta=beta), reward=reward, prompts=PROMPTS, model=model,
                     tokenizer=tok, log=lambda _m: None)
    rewards = [h["reward"] for h in res.history]
    assert len(rewards) == 12
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.1, rewards
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    for key in ("reward", "reward_std", "completion_length", "clip_ratio", "rollout_s", "update_s", "lr"):
        assert key in rec
    samples = [json.loads(s) for s in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == set(range(1, 13))
    assert (tmp_path / "final" / "config.json").exists()
    if beta:
        assert rec["kl"] != 0.0 and "kl_seq" in rec


def test_resume_mid_run_reproduces_metrics(tmp_path: Path) -> None:
    """LoRA + adapter reference + β > 0 + μ = 2 (old log-probs, clipping): the hardest path to resume."""
    lora = LoraConfig(r=4, alpha=8)
    kw = dict(max_steps=4, save_every=2, keep_checkpoints=0, lr=2e-2, beta=0.04, reference="adapter", lora=lora,
              objective_args=dict(num_iterations=2, max_new_tokens=6, num_generations=4))

    def run(out: Path, resume: bool = False):
        model, tok = load_model("tiny-random", seed=0, lora=lora)
        reward = vowel_reward()
        return run_online(config(out, resume=resume, **kw), reward=reward, prompts=PROMPTS, model=model,
                          tokenizer=tok, log=lambda _m: None)

    full = run(tmp_path / "a")
    assert full.history[-1]["kl"] > 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-4")
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.resumed_from == 2 and len(resumed.history) == 2

    def strip(path: Path) -> list[dict]:
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert strip(tmp_path / "b" / "metrics.jsonl") == strip(tmp_path / "a" / "metrics.jsonl")
    assert (tmp_path / "b" / "samples.jsonl").read_text() == (tmp_path / "a" / "samples.jsonl").read_text()


def test_step_prompts_cover_each_epoch_and_split_ranks() -> None:
    seen = [i for s in range(3) for i in step_prompts(6, s, 2, 1, 0, seed=1, shuffle=True)]
    assert sorted(seen) == list(range(6))
    r0 = step_prompts(8, 0, 2, 2, 0, seed=0, shuffle=False)
    r1 = step_prompts(8, 0, 2, 2, 1, seed=0, shuffle=False)
    assert r0 == [0, 1] and r1 == [2, 3]
