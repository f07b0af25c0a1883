"""Binary-unpaired objectives (spec §2): rows hold one completion, `[B, 1]` tensors, `lp.labels` `[B, 1]` bool
(True = desirable / thumbs-up).

Extras:
  KTO: `needs_extras=("kl",)` means the engine fills `lp.extras["kl_policy"]` and `lp.extras["kl_reference"]`,
       each `[B]`: summed log-probs of *mismatched* pairs (x_i, y'_i), y'_i = y_{i−1} (TRL's cycle-by-one),
       under policy and reference.
  BCO: optional `lp.extras["udm_weight"]` `[B]`: density ratio w(x) = p₊(x)/p₋(x) from `alignkit.objectives.udm`;
       applied to undesirable items only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import (
    check_shape,
    f32,
    need,
    need_extra,
    neg_logsigmoid,
    ratios,
    reward_shift,
)
from alignkit.objectives.base import LogProbs, Metrics, mean_metric, register_objective


def _unpaired(lp: LogProbs, name: str) -> tuple[Tensor, Tensor]:
    """(ρ `[B]`, desirable mask `[B]`) for an unpaired batch."""
    check_shape(lp, name, k=1)
    labels = need(lp.labels, "labels (desirable=True / undesirable=False)", name)
    if labels.numel() != lp.policy.shape[0]:
        raise ConfigError(f"objective {name!r}: labels has {labels.numel()} values for a batch of "
                          f"{lp.policy.shape[0]}")
    return ratios(lp, name)[:, 0], labels.reshape(-1).bool()


def _unpaired_metrics(rewards: Tensor, desirable: Tensor, lp: LogProbs) -> Metrics:
    r, pol = rewards.detach(), f32(lp.policy).detach()[:, 0]
    metrics: Metrics = {"count/desirable": float(desirable.sum()), "count/undesirable": float((~desirable).sum())}
    if desirable.any():
        metrics["rewards/chosen"] = mean_metric(r[desirable])
        metrics["logps/chosen"] = mean_metric(pol[desirable])
    if (~desirable).any():
        metrics["rewards/rejected"] = mean_metric(r[~desirable])
        metrics["logps/rejected"] = mean_metric(pol[~desirable])
    if desirable.any() and (~desirable).any():
        metrics["rewards/margin"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return metrics


@register_objective("kto", data_kind="unpaired", needs_reference=True, needs_extras=("kl",),
                    paper="Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization",
                    beta=0.1, desirable_weight=1.0, undesirable_weight=1.0)
def kto(lp: LogProbs, *, beta: float, desirable_weight: float, undesirable_weight: float) -> tuple[Tensor, Metrics]:
    """KTO (spec §2.1).

    z₀ = max(0, mean_i[S_θ(y'_i|x_i) − S_ref(y'_i|x_i)]) over mismatched pairs, detached
    (`lp.extras["kl_policy"]`, `lp.extras["kl_reference"]`, each `[B]`);
    L = λ_D·[1 − σ(β(ρ − z₀))] for a desirable item, λ_U·[1 − σ(β(z₀ − ρ))] for an undesirable one; mean over B.
    Defaults β = 0.1, λ_D = λ_U = 1 (for imbalanced data pick λ_D·n_D/(λ_U·n_U) ∈ [1, 4/3]).
    A batch of one is refused (ConfigError), as TRL's `KTOTrainer` refuses `per_device_train_batch_size` ≤ 1:
    cycling by one pairs the example with its own completion, so z₀ = max(0, ρ) is the example's own log-ratio
    (the paper's z₀ is a KL over *mismatched* prompts and completions), and the loss is flat in ρ above 0 for a
    desirable example. The check is on the per-process batch `[B, 1]`: the mismatched pairs are built within it
    even when the engine gathers them from every process.
    Worked: ρ_D = 0.5, ρ_U = −0.3, mismatched [0.2, −0.1] → z₀ = 0.05, loss 0.4900014.
    """
    if lp.policy.dim() == 2 and lp.policy.shape[0] < 2:
        raise ConfigError("objective 'kto': a batch of one example makes z₀ the example's own log-ratio (its "
                          "mismatched pair is itself); use batch_size ≥ 2 per process (TRL refuses it too)")
    rho, desirable = _unpaired(lp, "kto")
    kl_pol = f32(need_extra(lp, "kl_policy", "kto")).detach()
    kl_ref = f32(need_extra(lp, "kl_reference", "kto")).detach()
    z0 = (kl_pol - kl_ref).mean().clamp(min=0)
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (rho - z0))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z0 - rho))))
    metrics = _unpaired_metrics(beta * rho, desirable, lp)
    metrics["kl"] = float(z0)
    return losses.mean(), metrics


@register_objective("bco", data_kind="unpaired", needs_reference=True,
                    paper="Jung et al. 2024, Binary Classifier Optimization for Large Language Model Alignment",
                    beta=0.1, delta_mode="pooled", use_udm=True, state=None)
def bco(lp: LogProbs, *, beta: float, delta_mode: str, use_udm: bool,
        state: dict[str, Any] | None) -> tuple[Tensor, Metrics]:
    """BCO with reward shift and optional UDM (spec §2.2).

    r = βρ; δ = detached running mean of r (updated with this batch *before* the loss; TRL's pooled rule by
    default, `delta_mode="class_mean"` for the paper's mean of class means), kept in the persistent `state`
    dict the engine passes and checkpoints (keys `delta` or `delta_desirable`/`delta_undesirable`, each
    {"mean", "count"}); `state=None` uses the batch mean.
    L = −log σ(r − δ) for a desirable item, w(x)·[−log σ(−(r − δ))] for an undesirable one, w =
    `lp.extras["udm_weight"]` `[B]` when present and `use_udm`, else 1; mean over all items. Default β = 0.1.
    Worked: r = [0.05 | −0.03, 0.01], fresh state → δ = 0.01, loss 0.6799472.
    """
    rho, desirable = _unpaired(lp, "bco")
    r = beta * rho
    delta = reward_shift(state, r, desirable, delta_mode, "bco")
    weight = torch.ones_like(r)
    if use_udm and "udm_weight" in lp.extras:
        weight = f32(lp.extras["udm_weight"]).detach().reshape(-1)
    losses = torch.where(desirable, neg_logsigmoid(r - delta), weight * neg_logsigmoid(-(r - delta)))
    metrics = _unpaired_metrics(r, desirable, lp)
    metrics["delta"] = float(delta)
    return losses.mean(), metrics


@register_objective("apo_zero_unpaired", data_kind="unpaired", needs_reference=True,
                    paper="D'Oosterlinck et al. 2024, Anchored Preference Optimization (unpaired APO-zero)",
                    beta=0.1, desirable_weight=1.0, undesirable_weight=1.0)
def apo_zero_unpaired(lp: LogProbs, *, beta: float, desirable_weight: float,
                      undesirable_weight: float) -> tuple[Tensor, Metrics]:
    """Unpaired APO-zero (TRL KTO `loss_type="apo_zero_unpaired"`): desirable L = λ_D·[1 − σ(βρ)], undesirable
    L = λ_U·σ(βρ); mean over items. No KL term. Defaults β = 0.1, λ_D = λ_U = 1."""
    rho, desirable = _unpaired(lp, "apo_zero_unpaired")
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * rho)),
                         undesirable_weight * torch.sigmoid(beta * rho))
    return losses.mean(), _unpaired_metrics(beta * rho, desirable, lp)
