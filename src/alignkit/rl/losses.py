"""Clipped policy-gradient losses: GRPO's per-token form with a k3 KL penalty (spec objectives.md §9.1 step 3-4),
and RLOO's per-sequence form (Ahmadian et al. 2024), where the whole completion is one action.

GRPO (`policy_loss`; also `grpo_loo`, the same loss with RLOO's leave-one-out advantages):

Per completion i and token t, with ρ_{i,t} = exp(log π_θ − log π_old) and constant advantage Â_i:

    ℓ_{i,t} = −min(ρ_{i,t}·Â_i, clip(ρ_{i,t}, 1 − ε_low, 1 + ε_high)·Â_i) + β·k3_{i,t}
    k3_{i,t} = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1          (Schulman's k3: unbiased, ≥ 0)

Defaults follow TRL 0.17 as BLEUBERI uses it: ε_low = ε_high = 0.2, β = 0.04. π_old is the policy that sampled the
batch (detached); with one optimisation pass per batch (μ = 1) ρ ≡ 1 and clipping never binds, with μ > 1 it does.
DAPO's "clip-higher" is ε_high > ε_low.

Aggregation over the masked tokens (the `loss_type` of TRL):
- `token`    ("bnpo", TRL 0.17 default): Σ_{i,t} ℓ·mask / Σ mask.
- `sequence` ("grpo", the DeepSeekMath form): mean over tokens of each sequence, then mean over sequences.
- `dr_grpo`  (Dr. GRPO, Liu et al. 2025): Σ_{i,t} ℓ·mask / (num sequences × max_completion_length), a constant
  normaliser, so neither long nor short completions are favoured.
Worked example (§9.1): rewards [0.1, 0.3, 0.2, 0.0], lengths [3, 2, 4, 1], ρ = 1, π = π_ref → token loss
−0.1547994, sequence loss 0.

`normalizer` lets a caller that splits one batch into micro-batches pass the *whole* batch's token count (token),
sequence count (sequence) or sequence count × max length (dr_grpo), so the sum of micro-batch losses equals the
full-batch loss exactly, whatever the micro-batch size.

RLOO (`sequence_policy_loss`; "Back to Basics", Ahmadian et al. 2024, §3; TRL's RLOOTrainer `_compute_loss`):
the action is the completion y_i, so the ratio is on the summed sequence log-prob,
    ρ_i = exp(Σ_t log π_θ(y_i,t) − Σ_t log π_old(y_i,t)),   ℓ = mean_i −min(ρ_i·Â_i, clip(ρ_i, 1−ε_low, 1+ε_high)·Â_i),
with no KL term in the loss: the KL enters the *reward* before the leave-one-out baseline (`sequence_kl`,
advantages.rloo_advantages). At μ = 1 (ρ = 1) every token of completion i gets the gradient −Â_i/N whatever its
length, where GRPO's sequence aggregation gives −Â_i/(N·|y_i|): long completions are not down-weighted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from alignkit.errors import ConfigError

Aggregation = Literal["token", "sequence", "dr_grpo"]
AGGREGATION_ALIASES = {"bnpo": "token", "grpo": "sequence", "token": "token", "sequence": "sequence",
                       "dr_grpo": "dr_grpo"}


def resolve_aggregation(name: str) -> str:
    if name not in AGGREGATION_ALIASES:
        raise ConfigError(f"unknown loss aggregation {name!r}; use one of {sorted(AGGREGATION_ALIASES)}")
    return AGGREGATION_ALIASES[name]


def k3_kl(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(π_θ ‖ π_ref): e^{ref−θ} − (ref−θ) − 1. Non-negative, zero iff equal."""
    d = ref_logps - logps
    return torch.exp(d) - d - 1


def aggregate(per_token: Tensor, mask: Tensor, aggregation: str, max_completion_length: int | None = None,
              normalizer: float | None = None) -> Tensor:
    """Reduce `[N, T]` per-token values to a scalar under `aggregation` (see module docstring)."""
    kind = resolve_aggregation(aggregation)
    mask = mask.to(per_token.dtype)
    if kind == "token":
        denom = normalizer if normalizer is not None else mask.sum().clamp(min=1.0)
        return (per_token * mask).sum() / denom
    if kind == "sequence":
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        denom = normalizer if normalizer is not None else per_token.shape[0]
        return per_seq.sum() / denom
    if normalizer is None:
        if not max_completion_length:
            raise ConfigError("aggregation 'dr_grpo' needs max_completion_length")
        normalizer = per_token.shape[0] * max_completion_length
    return (per_token * mask).sum() / normalizer


@dataclass
class LossOutput:
    loss: Tensor
    metrics: dict[str, float]


def _check_inputs(logps: Tensor, advantages: Tensor, mask: Tensor, epsilon_low: float,
                  epsilon_high: float | None) -> float:
    """Shape and clipping checks shared by the token- and sequence-level losses; returns epsilon_high."""
    if logps.shape != mask.shape:
        raise ConfigError(f"log-probs {tuple(logps.shape)} and mask {tuple(mask.shape)} differ in shape")
    if advantages.shape != logps.shape[:1] and advantages.shape != logps.shape:
        raise ConfigError(f"advantages {tuple(advantages.shape)} must have one entry per sequence ({logps.shape[0]}) "
                          f"or per token {tuple(logps.shape)}")
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
    if epsilon_low < 0 or epsilon_high < 0:
        raise ConfigError("clipping epsilons must be >= 0")
    return epsilon_high


def policy_loss(logps: Tensor, advantages: Tensor, mask: Tensor, *, old_logps: Tensor | None = None,
                ref_logps: Tensor | None = None, beta: float = 0.04, epsilon_low: float = 0.2,
                epsilon_high: float | None = None, aggregation: str = "token",
                max_completion_length: int | None = None, normalizer: float | None = None) -> LossOutput:
    """The clipped surrogate + β·k3 loss over per-token log-probs `[N, T]` (see module docstring); `advantages`
    is `[N]` (Â_i broadcast to the tokens) or `[N, T]` (Â_{i,t}, dense token rewards).

    `old_logps=None` means π_old = π_θ.detach() (μ = 1). `ref_logps` is needed only when β > 0. Metrics are
    token-weighted over this call's tokens: `kl`, `clip_ratio` (low, high, total: tokens whose ratio left the
    trust region in the direction that clipping cuts off) and `ratio_mean`.
    """
    epsilon_high = _check_inputs(logps, advantages, mask, epsilon_low, epsilon_high)
    logps = logps.float()
    old = logps.detach() if old_logps is None else old_logps.float()
    ratio = torch.exp(logps - old)
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    # one advantage per sequence is broadcast to its tokens; dense rewards give one per token (rl.dense)
    adv = (advantages.float() if advantages.dim() == 2 else advantages.float().unsqueeze(1)).detach()
    per_token = -torch.min(ratio * adv, clipped * adv)
    maskf = mask.float()
    ntok = maskf.sum().clamp(min=1.0)
    metrics: dict[str, float] = {}
    if beta != 0.0:
        if ref_logps is None:
            raise ConfigError("beta > 0 needs reference log-probs (set beta: 0 to train without a reference)")
        kl = k3_kl(logps, ref_logps.float())
        per_token = per_token + beta * kl
        metrics["kl"] = float((kl.detach() * maskf).sum() / ntok)
    elif ref_logps is not None:
        metrics["kl"] = float((k3_kl(logps.detach(), ref_logps.float()) * maskf).sum() / ntok)
    loss = aggregate(per_token, mask, aggregation, max_completion_length, normalizer)
    with torch.no_grad():
        low = ((ratio < 1 - epsilon_low) & (adv < 0)).float()
        high = ((ratio > 1 + epsilon_high) & (adv > 0)).float()
        metrics["clip_ratio_low"] = float((low * maskf).sum() / ntok)
        metrics["clip_ratio_high"] = float((high * maskf).sum() / ntok)
        metrics["clip_ratio"] = metrics["clip_ratio_low"] + metrics["clip_ratio_high"]
        metrics["ratio_mean"] = float((ratio * maskf).sum() / ntok)
    return LossOutput(loss, metrics)


def sequence_kl(logps: Tensor, ref_logps: Tensor, mask: Tensor) -> Tensor:
    """Σ_t (log π − log π_ref) over each completion's tokens, `[N]`: the first-order (k1) estimate of the sequence
    KL that RLOO subtracts from the reward (β·KL, Ahmadian et al. 2024 eq. 1; TRL RLOOTrainer). It may be negative
    for one sample; its expectation under π is KL(π‖π_ref) ≥ 0. Constant (no gradient)."""
    if logps.shape != ref_logps.shape or logps.shape != mask.shape:
        raise ConfigError(f"sequence_kl: shapes {tuple(logps.shape)}, {tuple(ref_logps.shape)}, "
                          f"{tuple(mask.shape)} differ")
    return ((logps.float() - ref_logps.float()).detach() * mask.float()).sum(-1)


def sequence_policy_loss(logps: Tensor, advantages: Tensor, mask: Tensor, *, old_logps: Tensor | None = None,
                         epsilon_low: float = 0.2, epsilon_high: float | None = None,
                         normalizer: float | None = None) -> LossOutput:
    """RLOO's clipped surrogate on whole completions (see module docstring) from per-token log-probs `[N, T]`.

    `old_logps=None` means π_old = π_θ.detach() (μ = 1). `normalizer` (default N) is the whole rollout batch's
    sequence count when the batch is split into micro-batches. Metrics: `clip_ratio` (`_low`, `_high`: fraction
    of sequences whose ratio left the trust region in the clipped direction), `ratio_mean` (per sequence).
    """
    epsilon_high = _check_inputs(logps, advantages, mask, epsilon_low, epsilon_high)
    if advantages.dim() != 1:
        raise ConfigError("the per-sequence RLOO loss takes one advantage per completion; per-token advantages "
                          "go through policy_loss (rl.dense)")
    maskf = mask.float()
    seq = (logps.float() * maskf).sum(-1)
    old = seq.detach() if old_logps is None else (old_logps.float() * maskf).sum(-1)
    ratio = torch.exp(seq - old)
    adv = advantages.float().detach()
    per_seq = -torch.min(ratio * adv, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * adv)
    loss = per_seq.sum() / (normalizer if normalizer is not None else per_seq.shape[0])
    with torch.no_grad():
        low = float(((ratio < 1 - epsilon_low) & (adv < 0)).float().mean())
        high = float(((ratio > 1 + epsilon_high) & (adv > 0)).float().mean())
        metrics = {"clip_ratio_low": low, "clip_ratio_high": high, "clip_ratio": low + high,
                   "ratio_mean": float(ratio.mean())}
    return LossOutput(loss, metrics)
