"""Prompt selection by the base model's reward, as BLEUBERI picks "hard" instructions (spec objectives.md §9.1,
`training/create_training_data.py`): sample one response per prompt from the base model (temperature 0.7,
top-p 0.9), score it with the training reward against the prompt's references, then keep

- `hard`:   the `num` lowest-scoring prompts (BLEUBERI's choice),
- `easy`:   the `num` highest-scoring,
- `medium`: the middle slice of `num`,
- `random`: `num` uniformly at random (seeded).

Ties keep the original order (a stable sort), so the selection is a pure function of model, seed and data.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.data.records import PromptExample
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError
from alignkit.rewards.base import Reward
from alignkit.rl.rollout import score

MODES = ("hard", "easy", "medium", "random")


@dataclass
class Selection:
    records: list[PromptExample]
    scores: list[float]  # base-model reward of every candidate, in input order
    kept: list[int]  # indices into the candidates, in selection order


def select_prompts(sampler: Sampler, reward: Reward, records: Sequence[PromptExample], num: int, mode: str = "hard",
                   *, max_new_tokens: int = 64, temperature: float = 0.7, top_p: float = 0.9, seed: int = 0,
                   batch_size: int = 16) -> Selection:
    if mode not in MODES:
        raise ConfigError(f"selection mode must be one of {MODES}, got {mode!r}")
    if num < 1:
        raise ConfigError(f"select_num must be >= 1, got {num}")
    records = list(records)
    num = min(num, len(records))
    scores: list[float] = []
    if mode != "random":
        from tqdm.auto import tqdm

        for start in tqdm(range(0, len(records), batch_size), desc=f"select {mode}", leave=False):
            chunk = records[start:start + batch_size]
            out = sampler.sample([r.prompt for r in chunk], n=1, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, seed=seed + start)
            got = score(reward, chunk, [g[0].text for g in out], 1).scores
            scores.extend(got)
    if mode == "random":
        kept = sorted(random.Random(seed).sample(range(len(records)), num))
    else:
        order = sorted(range(len(records)), key=lambda i: scores[i])
        if mode == "hard":
            kept = order[:num]
        elif mode == "easy":
            kept = order[::-1][:num]
        else:
            mid = (len(order) - num) // 2
            kept = order[mid:mid + num]
    return Selection([records[i] for i in kept], scores, kept)
