"""Shared set-up for the small online-RL runs of the reliability tests: a length reward and a 1-step GRPO config
on the tiny model."""

from __future__ import annotations

from pathlib import Path

from alignkit.rewards.base import FunctionReward
from alignkit.train.config import TrainConfig

QUIET = {"log": lambda _m: None}


def length_reward() -> FunctionReward:
    return FunctionReward(lambda prompts, completions, **_: [float(len(c)) for c in completions], name="length")


def online_cfg(out: Path, data: str, **kw: object) -> TrainConfig:
    args = dict(num_generations=2, max_new_tokens=3, temperature=1.0, top_k=8)
    base = dict(model="tiny-random", objective="grpo", data=data, output_dir=str(out), batch_size=2, lr=1e-2,
                max_steps=1, save_every=1, scheduler="constant", beta=0.0, progress=False, objective_args=args,
                torch_threads=1)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]
