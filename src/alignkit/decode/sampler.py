"""The Sampler protocol (DESIGN.md, protocol 4).

Every test-time strategy and every RL rollout talks to a model only through this protocol, and every call counts
tokens, so strategies can be compared at equal compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from alignkit.data.records import Prompt


@dataclass
class Compute:
    """Token accounting. `forward_tokens` counts every token a forward pass processed (prompt encodings, scoring,
    and generated tokens fed back); `generated_tokens` counts sampled tokens; `reward_calls` counts completions
    scored by a reward."""

    forward_tokens: int = 0
    generated_tokens: int = 0
    reward_calls: int = 0

    def add(self, other: Compute) -> None:
        self.forward_tokens += other.forward_tokens
        self.generated_tokens += other.generated_tokens
        self.reward_calls += other.reward_calls

    def as_dict(self) -> dict[str, int]:
        return {"forward_tokens": self.forward_tokens, "generated_tokens": self.generated_tokens,
                "reward_calls": self.reward_calls}


@dataclass
class Sample:
    text: str
    token_ids: list[int]
    logprob: float  # summed log-prob of the sampled tokens under the sampling distribution
    finish_reason: str  # "stop" | "eos" | "length"


@runtime_checkable
class Sampler(Protocol):
    compute: Compute

    def sample(self, prompts: Sequence[Prompt], n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (), seed: int | None = None
               ) -> list[list[Sample]]:
        """n samples per prompt; result[i][j] is sample j of prompt i."""
        ...

    def extend(self, prompts: Sequence[Prompt], prefixes: Sequence[str], max_new_tokens: int = 128,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
               seed: int | None = None) -> list[Sample]:
        """Continue each partial completion prefixes[i] of prompts[i]; the returned text excludes the prefix."""
        ...

    def score_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> list[list[float]]:
        """Per-token log-probs of completions[i] given prompts[i] (teacher-forced)."""
        ...
