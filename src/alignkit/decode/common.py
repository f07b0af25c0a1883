"""Pieces shared by the test-time strategies: the per-prompt result record and reward scoring with accounting.

Strategies talk to models only through the Sampler protocol and to rewards only through
`reward(prompts, completions, **context) -> RewardResult` (validated by `check_result`). Per-example reward context
(`constraints`, `references`, …) is given per *prompt* and repeated here for every completion of that prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alignkit.data.records import Prompt
from alignkit.decode.sampler import Compute
from alignkit.errors import ConfigError, RewardError
from alignkit.rewards.base import check_result

RewardFn = Callable[..., Any]
Context = Mapping[str, Any]


@dataclass
class StrategyResult:
    """One prompt's outcome: the chosen completion, the candidates considered (with their rewards where known),
    the compute spent on this prompt, and strategy-specific info (acceptance rate, nudged fraction, …)."""

    prompt: Prompt
    completion: str
    candidates: list[str] = field(default_factory=list)
    scores: list[float] | None = None
    compute: Compute = field(default_factory=Compute)
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completion": self.completion, "candidates": self.candidates,
                "scores": self.scores, "compute": self.compute.as_dict(), "info": self.info}


def reward_label(reward: Any) -> str:
    return str(getattr(reward, "name", None) or getattr(reward, "__name__", None) or type(reward).__name__)


def check_contexts(contexts: Sequence[Context] | None, n_prompts: int) -> list[Context]:
    if contexts is None:
        return [{} for _ in range(n_prompts)]
    if len(contexts) != n_prompts:
        raise ConfigError(f"got {len(contexts)} reward contexts for {n_prompts} prompts (one dict per prompt)")
    return list(contexts)


def score(reward: RewardFn, prompts: Sequence[Prompt], completions: Sequence[str],
          contexts: Sequence[Context] | None = None) -> list[float]:
    """Score completions[i] for prompts[i]; contexts[i] is that row's context dict (keys become context columns).
    A missing key in some rows is passed as None for those rows."""
    if not completions:
        return []
    kwargs: dict[str, list[Any]] = {}
    if contexts is not None:
        keys = sorted({k for c in contexts for k in c})
        kwargs = {k: [c.get(k) for c in contexts] for k in keys}
    name = reward_label(reward)
    try:
        out = reward(list(prompts), list(completions), **kwargs)
    except RewardError:
        raise
    except Exception as e:  # noqa: BLE001 - a failure inside user reward code is reported against its name
        raise RewardError(f"reward '{name}' raised {type(e).__name__}: {e}") from e
    return check_result(name, out, len(completions)).scores


def repeat_rows(items: Sequence[Any], counts: Sequence[int]) -> list[Any]:
    return [item for item, c in zip(items, counts, strict=True) for _ in range(c)]
