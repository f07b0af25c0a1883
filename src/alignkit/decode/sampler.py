"""The Sampler protocol (DESIGN.md, protocol 4).

Every test-time strategy and every RL rollout talks to a model only through this protocol, and every call counts
tokens, so strategies can be compared at equal compute.

Accounting convention (exact, checked by tests): a call that encodes prompts and generates charges
`forward_tokens += Σ_prompts len(prompt ids [+ prefix ids]) + Σ_samples (len(sample.token_ids) − 1)` (every
generated token except the last is fed back once), and `generated_tokens += Σ_samples len(sample.token_ids)`.
With `n > 1` the prompt is encoded once and charged once. Padding is never counted. A sampler with a prefix cache
(`HFSampler(prefix_cache_mb=...)`) charges only the context tokens it really processed and counts the reused
ones in `cached_tokens`. Each `Sample` carries its own
share (`forward_tokens`; the shared prompt is charged to sample 0 of its prompt) so strategies can report compute
per prompt from batched calls.

Extensions beyond the original protocol (all backwards compatible):
- `extend` also accepts prefixes as token-id lists (QAlign keeps its state in tokens, spec A2.9).
- `Sample.token_logprobs`: log p(token) under the *unprocessed* model at temperature 1 (no top-p/top-k), which is
  what Nudging's top-1 test (spec C2.5) and likelihood-based strategies need.
- `TokenSampler`: samplers with logit access add `next_token_topk`, `decode` and `count_tokens` (DeAL, Nudging).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from alignkit.data.records import Prompt

Prefix = str | Sequence[int]


@dataclass
class Compute:
    """Token accounting. `forward_tokens` counts every token a forward pass really processed (prompt encodings,
    scoring, and generated tokens fed back); `generated_tokens` counts sampled tokens; `reward_calls` counts
    completions scored by a reward; `cached_tokens` counts context tokens whose keys/values came from a prefix
    cache instead of a forward pass (not in `forward_tokens`: forward + cached = what a cacheless sampler spends)."""

    forward_tokens: int = 0
    generated_tokens: int = 0
    reward_calls: int = 0
    cached_tokens: int = 0

    def add(self, other: Compute) -> None:
        self.forward_tokens += other.forward_tokens
        self.generated_tokens += other.generated_tokens
        self.reward_calls += other.reward_calls
        self.cached_tokens += other.cached_tokens

    def copy(self) -> Compute:
        return Compute(self.forward_tokens, self.generated_tokens, self.reward_calls, self.cached_tokens)

    def minus(self, other: Compute) -> Compute:
        return Compute(self.forward_tokens - other.forward_tokens, self.generated_tokens - other.generated_tokens,
                       self.reward_calls - other.reward_calls, self.cached_tokens - other.cached_tokens)

    def as_dict(self) -> dict[str, int]:
        return {"forward_tokens": self.forward_tokens, "generated_tokens": self.generated_tokens,
                "reward_calls": self.reward_calls, "cached_tokens": self.cached_tokens}


# finish reasons of a sample that did not end by itself: cut off by the budget, or stopped by early rejection
UNFINISHED = frozenset({"length", "rejected"})


@dataclass
class Sample:
    text: str
    token_ids: list[int]
    logprob: float  # summed log-prob of the sampled tokens under the sampling distribution
    finish_reason: str  # "stop" | "eos" | "length" | "rejected" (HFSampler.sample(reject=...))
    # log p(token) under the raw model (temperature 1, no truncation), one per token_ids entry; empty if unknown
    token_logprobs: list[float] = field(default_factory=list)
    forward_tokens: int = 0  # this sample's share of the call's forward tokens (see module docstring)
    cached_tokens: int = 0  # context tokens of this sample's share served by a prefix cache (not in forward_tokens)

    @property
    def compute(self) -> Compute:
        return Compute(forward_tokens=self.forward_tokens, generated_tokens=len(self.token_ids),
                       cached_tokens=self.cached_tokens)


@dataclass(frozen=True)
class TopToken:
    token_id: int
    text: str
    logprob: float  # raw model log-prob at temperature 1
    is_eos: bool = False


@runtime_checkable
class Sampler(Protocol):
    compute: Compute

    def sample(self, prompts: Sequence[Prompt], n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (), seed: int | None = None
               ) -> list[list[Sample]]:
        """n samples per prompt; result[i][j] is sample j of prompt i. temperature 0 means greedy."""
        ...

    def extend(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], max_new_tokens: int = 128,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
               seed: int | None = None) -> list[Sample]:
        """Continue each partial completion prefixes[i] (text or token ids) of prompts[i]; the returned text and
        token_ids exclude the prefix."""
        ...

    def score_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[Prefix]) -> list[list[float]]:
        """Per-token log-probs of completions[i] (text or token ids) given prompts[i] (teacher-forced)."""
        ...


@runtime_checkable
class TokenSampler(Sampler, Protocol):
    """A sampler with logit access (needed by DeAL's action pruning and Nudging's uncertainty test)."""

    def next_token_topk(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], k: int
                        ) -> list[list[TopToken]]:
        """The k most likely next tokens after prompts[i] + prefixes[i] under the raw model, best first."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str:
        ...

    def count_tokens(self, text: str) -> int:
        ...


def seed_for(seed: int | None, *keys: int) -> int | None:
    """A per-row seed derived from a call seed and row keys (prompt index, sample index), so a row's random
    stream does not depend on what else is in the batch."""
    if seed is None:
        return None
    h = seed & 0xFFFFFFFFFFFF
    for k in keys:
        h = (h * 1_000_003 + k + 0x9E3779B1) & 0xFFFFFFFFFFFF
    return h
