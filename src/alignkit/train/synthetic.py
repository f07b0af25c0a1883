"""Small synthetic data sets for tests, examples and benchmarks (no downloads)."""

from __future__ import annotations

import random

from alignkit.data.records import PairwiseExample, SFTExample

SUBJECTS = ["cats", "rivers", "prime numbers", "the moon", "bread", "volcanoes", "chess", "rain", "music", "salt"]


def synthetic_pairs(n: int = 64, seed: int = 0, chat: bool = True) -> list[PairwiseExample]:
    """Pairs where the chosen answer is a short on-topic sentence and the rejected one a refusal-like ramble."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        q = f"Tell me one fact about {subject} (#{i})."
        prompt: object = [{"role": "user", "content": q}] if chat else q
        chosen = f"Here is a fact about {subject}: it is interesting and worth learning about."
        rejected = rng.choice(["I am not sure I can help with that request right now.",
                               "Sorry, no. Ask someone else about it maybe.",
                               "Hmm. That is a hard one; I would rather not answer."])
        out.append(PairwiseExample(prompt, chosen, rejected))  # type: ignore[arg-type]
    return out


def synthetic_sft(n: int = 32, seed: int = 0) -> list[SFTExample]:
    return [SFTExample(p.prompt, p.chosen) for p in synthetic_pairs(n, seed)]
