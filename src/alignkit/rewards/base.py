"""The Reward protocol (DESIGN.md, protocol 3).

A reward is any callable `reward(prompts, completions) -> RewardResult`. Programmatic verifiers, reference
metrics, reward models, user functions and their combinations all look the same, so they are interchangeable in
data building, RL, test-time alignment and evaluation. `check_result` validates what a reward returned and names
the reward in every error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from alignkit.data.records import Prompt
from alignkit.errors import RewardError


@dataclass
class RewardResult:
    """Scores (one float per completion) and optional per-completion attributes (e.g. per-constraint results)."""

    scores: list[float]
    attributes: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Reward(Protocol):
    name: str

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        """Score completions[i] as a response to prompts[i]. `context` carries per-example extras such as
        `references` (list of lists of strings) or `constraints` (list of constraint lists)."""
        ...


def check_result(name: str, result: Any, n: int) -> RewardResult:
    """Validate a reward's output: a RewardResult (or plain sequence of numbers) of length n with finite scores."""
    if not isinstance(result, RewardResult):
        if isinstance(result, Sequence) and not isinstance(result, str):
            result = RewardResult(scores=list(result))
        else:
            raise RewardError(f"reward '{name}' returned {type(result).__name__}; expected RewardResult or a list of floats")
    if len(result.scores) != n:
        raise RewardError(f"reward '{name}' returned {len(result.scores)} scores for {n} completions")
    scores = []
    for i, s in enumerate(result.scores):
        try:
            f = float(s)
        except (TypeError, ValueError) as e:
            raise RewardError(f"reward '{name}' returned a non-numeric score {s!r} at index {i}") from e
        if not math.isfinite(f):
            raise RewardError(f"reward '{name}' returned a non-finite score ({f}) at index {i}")
        scores.append(f)
    result.scores = scores
    if result.attributes is not None and len(result.attributes) != n:
        raise RewardError(f"reward '{name}' returned {len(result.attributes)} attribute rows for {n} completions")
    return result
