"""The objective protocol (DESIGN.md, protocol 2) and the objective registry.

An objective is a pure function `objective(lp: LogProbs, **hparams) -> (loss, metrics)`. The engine fills a
`LogProbs` with exactly what the objective declared it needs (reference? teacher? token-level values?), so
nothing else is computed.

Shapes are by data kind: every per-sequence tensor is `[B, K]`, where K is 1 for sft/unpaired records, 2 for
pairwise records (column 0 = chosen, column 1 = rejected) and the list length for listwise records (padded
items have `item_mask == False`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alignkit.errors import ConfigError

Metrics = dict[str, float]
ObjectiveFn = Callable[..., tuple[Tensor, Metrics]]


@dataclass
class LogProbs:
    """Per-sequence log-probabilities (and what some objectives need besides) for one batch.

    policy:      summed completion log-probs S_θ(y), `[B, K]`, differentiable.
    lengths:     completion token counts |y| (the label-mask sum), `[B, K]`, float.
    reference:   S_ref(y), `[B, K]`, no grad; None when the objective is reference-free.
    item_mask:   `[B, K]` bool, False for padding items in ragged lists; None means all valid.
    scores:      per-item scores (listwise ψ, reward-model scores), `[B, K]`.
    labels:      unpaired desirable (True) / undesirable (False), `[B, K]` bool.
    margins:     per-pair margins (RM margin or rating margin), `[B]`.
    token_policy / token_reference / token_mask: per-token log-probs `[B, K, T]` for token-level objectives.
    extras:      objective-specific tensors (e.g. `kl_policy`/`kl_reference` for KTO's mismatched pairs,
                 teacher top-k distributions), named in the objective's `needs_extras`.
    """

    policy: Tensor
    lengths: Tensor
    reference: Tensor | None = None
    item_mask: Tensor | None = None
    scores: Tensor | None = None
    labels: Tensor | None = None
    margins: Tensor | None = None
    token_policy: Tensor | None = None
    token_reference: Tensor | None = None
    token_mask: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def averaged(self) -> Tensor:
        """A_θ(y) = S_θ(y)/|y| (length-normalised), safe for empty completions."""
        return self.policy / self.lengths.clamp(min=1)

    def ratio(self) -> Tensor:
        """ρ(y) = S_θ(y) − S_ref(y)."""
        if self.reference is None:
            raise ConfigError("this objective needs reference log-probs, but none were computed")
        return self.policy - self.reference


@dataclass(frozen=True)
class ObjectiveSpec:
    """What an objective consumes and needs, so the engine computes nothing else."""

    name: str
    fn: ObjectiveFn
    data_kind: str
    needs_reference: bool
    needs_teacher: bool = False
    token_level: bool = False
    needs_extras: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    paper: str = ""

    def __call__(self, lp: LogProbs, **hparams: Any) -> tuple[Tensor, Metrics]:
        return self.fn(lp, **{**self.defaults, **hparams})


OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(name: str, *, data_kind: str, needs_reference: bool, needs_teacher: bool = False,
                       token_level: bool = False, needs_extras: tuple[str, ...] = (), paper: str = "",
                       **defaults: Any) -> Callable[[ObjectiveFn], ObjectiveFn]:
    """Decorator that registers an objective with its data kind, model needs and default hyperparameters."""

    def wrap(fn: ObjectiveFn) -> ObjectiveFn:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} registered twice")
        OBJECTIVES[name] = ObjectiveSpec(name, fn, data_kind, needs_reference, needs_teacher, token_level,
                                         tuple(needs_extras), dict(defaults), paper)
        return fn

    return wrap


def get_objective(name: str) -> ObjectiveSpec:
    import alignkit.objectives  # noqa: F401  (registers every objective)

    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; available: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


def mean_metric(x: Tensor) -> float:
    return float(x.detach().float().mean()) if x.numel() else 0.0


def as_float(x: Tensor | float) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)
