"""Shared helpers for the objective modules: input checks, fp32 views, the SFT term, reward metrics, and the
small running-mean state used by stateful objectives (BCO's reward shift δ).

Stateful objectives
-------------------
An objective that keeps statistics across steps registers a `state=None` default. The engine recognises it by
`"state" in spec.defaults`, owns one dict (an `ObjectiveState`) per objective, passes the *same* dict as `state=` on every
step, and writes it into checkpoints as JSON (it only ever holds floats). Restoring a checkpoint means passing
the loaded dict back. With `state=None` the objective computes the statistic from the current batch alone.

Data parallel (spec §11.3: running statistics are reduced across ranks): the engine passes an `ObjectiveState`,
a dict whose `reduce` attribute sums a tensor over processes (`accelerator.reduce(t, reduction="sum")`). Every
running-mean update then merges the *global* batch (sum and count of all ranks), so each rank holds the same δ
as one process with the whole batch would, and the checkpoint written by rank 0 is every rank's. Its `frozen`
attribute (set for evaluation) makes updates read δ without moving it: eval batches differ per rank, and the
training statistic should not depend on how often one evaluates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives.base import LogProbs, Metrics, mean_metric

PROB_FLOOR = 1e-7
LOG_PROB_FLOOR = math.log(PROB_FLOOR)


def f32(x: Tensor) -> Tensor:
    """Loss arithmetic runs in at least fp32 whatever dtype the model used (spec §0, convention 4): half and
    bfloat16 inputs are upcast, fp32/fp64 kept (fp64 lets tests check worked numbers to 1e-6 absolute)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def check_shape(lp: LogProbs, name: str, *, k: int | None = None) -> tuple[int, int]:
    """Validate `lp.policy`/`lp.lengths` as `[B, K]` (and K == k when given); return (B, K)."""
    if lp.policy.dim() != 2:
        raise ConfigError(f"objective {name!r}: LogProbs.policy must be [B, K], got shape {tuple(lp.policy.shape)}")
    if lp.lengths.shape != lp.policy.shape:
        raise ConfigError(f"objective {name!r}: LogProbs.lengths has shape {tuple(lp.lengths.shape)}, "
                          f"expected {tuple(lp.policy.shape)} like policy")
    b, kk = lp.policy.shape
    if k is not None and kk != k:
        raise ConfigError(f"objective {name!r} expects K={k} items per row (got K={kk}); "
                          f"{'pairwise rows are [chosen, rejected]' if k == 2 else 'one item per row'}")
    return b, kk


def need(value: Tensor | None, what: str, name: str) -> Tensor:
    """Return `value` or raise a ConfigError naming the missing LogProbs field."""
    if value is None:
        raise ConfigError(f"objective {name!r} needs LogProbs.{what}, but it is None")
    return value


def need_extra(lp: LogProbs, key: str, name: str) -> Tensor:
    if key not in lp.extras:
        have = ", ".join(sorted(lp.extras)) or "none"
        raise ConfigError(f"objective {name!r} needs LogProbs.extras[{key!r}] (extras present: {have})")
    return lp.extras[key]


def ratios(lp: LogProbs, name: str) -> Tensor:
    """ρ = S_θ − S_ref in fp32, `[B, K]`; the reference never carries gradient."""
    ref = need(lp.reference, "reference", name)
    return f32(lp.policy) - f32(ref).detach()


def averaged(lp: LogProbs) -> Tensor:
    """A_θ = S_θ/|y| in fp32, `[B, K]`."""
    return f32(lp.policy) / f32(lp.lengths).clamp(min=1)


def nll_chosen(lp: LogProbs) -> Tensor:
    """Per-example length-normalised NLL of column 0 (the chosen / SFT target): −S_θ(y_w)/|y_w|, `[B]`."""
    return -averaged(lp)[:, 0]


def add_sft(loss: Tensor, lp: LogProbs, sft_weight: float, metrics: Metrics) -> Tensor:
    """Add `sft_weight · mean_b NLL(y_w)` (the optional SFT-on-chosen term every pairwise objective offers)."""
    if sft_weight:
        nll = nll_chosen(lp).mean()
        metrics["nll_loss"] = float(nll.detach())
        return loss + sft_weight * nll
    return loss


def pair_metrics(chosen: Tensor, rejected: Tensor, lp: LogProbs) -> Metrics:
    """TRL-style reward diagnostics (detached) for a pairwise batch; `chosen`/`rejected` are `[B]` rewards."""
    chosen, rejected = chosen.detach(), rejected.detach()
    pol = f32(lp.policy).detach()
    return {
        "rewards/chosen": mean_metric(chosen),
        "rewards/rejected": mean_metric(rejected),
        "rewards/accuracy": mean_metric((chosen > rejected).float()),
        "rewards/margin": mean_metric(chosen - rejected),
        "logps/chosen": mean_metric(pol[:, 0]),
        "logps/rejected": mean_metric(pol[:, 1]),
    }


def neg_logsigmoid(z: Tensor) -> Tensor:
    """−log σ(z), computed as softplus(−z) for stability."""
    return F.softplus(-z)


def log1mexp(x: Tensor) -> Tensor:
    """log(1 − eˣ) for x < 0, stable on both sides of −ln 2 (ORPO's odds)."""
    x = x.clamp(max=-1e-7)  # A_θ = 0 (a certain completion) would give −inf odds
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def zero_loss(like: Tensor) -> Tensor:
    """A zero that stays attached to the graph, so backward() works when a batch carries no signal."""
    return like.sum() * 0.0


# ---- running mean (BCO δ) ---------------------------------------------------------------------------------

class ObjectiveState(dict):  # type: ignore[type-arg]
    """The persistent state dict of a stateful objective, plus how to reduce across processes (not saved).

    `reduce`: sums a tensor over data-parallel processes (None in one process); every rank must call it in the
    same order, which holds because every rank runs the same objective on every training step.
    `frozen`: when True, running means are read, not updated (evaluation).
    """

    reduce: Callable[[Tensor], Tensor] | None = None
    frozen: bool = False


def running_mean_update(state: dict[str, Any] | None, key: str, values: Tensor) -> float:
    """Merge `values` into the count-weighted running mean stored under `state[key]` and return the new mean.

    The merge is TRL's `RunningMoments` rule (exact running mean; the initial count 1e-24 makes the first update
    return the batch mean); TRL reduces the batch over processes first (`get_global_statistics`), as this does
    through `ObjectiveState.reduce`. With `state=None` the batch mean is returned and nothing is kept; with a
    frozen state the stored mean is returned (the batch mean if there is none yet) and nothing changes.
    """
    values = values.detach().double()
    frozen = bool(getattr(state, "frozen", False))
    local = torch.stack([values.sum(), values.new_tensor(float(values.numel()))])
    reduce = getattr(state, "reduce", None)
    if reduce is not None and not frozen:
        local = reduce(local)  # even with no local values: every rank joins the collective
    total, n = (float(v) for v in local.tolist())
    if state is not None and key in state and (n == 0 or frozen):
        return float(state[key]["mean"])
    if n == 0:
        return 0.0
    batch_mean = total / n
    if state is None or frozen:
        return batch_mean
    entry = state.setdefault(key, {"mean": 0.0, "count": 1e-24})
    tot = entry["count"] + n
    entry["mean"] = entry["mean"] + (batch_mean - entry["mean"]) * n / tot
    entry["count"] = tot
    return float(entry["mean"])


def reward_shift(state: dict[str, Any] | None, rewards: Tensor, desirable: Tensor, mode: str, name: str) -> float:
    """BCO's δ (spec §2.2): `pooled` = one running mean over every reward (TRL); `class_mean` = average of the
    desirable and undesirable running means (the paper's definition; equal to pooled for balanced data)."""
    if mode == "pooled":
        return running_mean_update(state, "delta", rewards)
    if mode == "class_mean":
        pos = running_mean_update(state, "delta_desirable", rewards[desirable])
        neg = running_mean_update(state, "delta_undesirable", rewards[~desirable])
        return 0.5 * (pos + neg)
    raise ConfigError(f"objective {name!r}: delta_mode must be 'pooled' or 'class_mean', got {mode!r}")
