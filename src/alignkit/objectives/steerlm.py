"""SteerLM 2.0 (spec wave2_selfalign_merge.md §7; Wang et al. 2024, *HelpSteer2*, arXiv 2406.08673; code
NeMo-Aligner `SteerLM2Dataset`, `compute_baselilne_weights`, `weight_loss_func`).

Rows are listwise groups: n samples y_i of one attribute-conditioned prompt (a, x), drawn from the SteerLM v1
model Q'. `lp.scores` `[B, K]` holds each sample's log target weight ℓ^A_i + ℓ^P_i − ℓ^{Q'}_i (written by the
`steerlm2` builder, `alignkit.data.steerlm.steerlm2_log_weight`), and the reference is Q' itself (the model the
samples came from, so S_ref(y_i|a,x) = ℓ^{Q'}_i; train from Q' with the default reference, or name it in
`reference_model`).

  w_i = softmax_i(scores)                    target weights, constant for the run;
  b_i = softmax_i(S_θ(y_i|a,x) − S_ref(y_i))  baseline weights, no gradient, from the current model;
  L   = Σ_i (w_i − b_i)·[−S_θ(y_i|a,x)] / mean_j |y_j|, averaged over groups.
Its gradient is the documented estimator −Σ (w − b)∇S_θ up to the 1/mean|y| scale; L itself can be negative
(Σ (w − b) = 0). Logged: KL(w‖b) = Σ w log(w/b) (+1e-8), zero at the fixed point Q_θ ∝ Q'·w.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives._common import f32, need, ratios
from alignkit.objectives.base import LogProbs, Metrics, register_objective

_NEG = -1e30


@register_objective("steerlm2", data_kind="listwise", needs_reference=True,
                    paper="Wang et al. 2024, HelpSteer2: Open-source dataset for training top-performing reward "
                          "models (SteerLM 2.0)")
def steerlm2(lp: LogProbs) -> tuple[Tensor, Metrics]:
    """SteerLM 2.0 (module docstring). No hyperparameters, so no defaults to set. Worked (spec §7): ℓ^A = [−0.5, −2, −1, −3],
    ℓ^P = [−20, −18, −25, −15], ℓ^{Q'} = [−19, −17, −24, −16], S_θ = [−19.5, −16.5, −24.5, −15.5],
    |y| = [10, 8, 12, 6] → L = 0.206728, KL(w‖b) = 0.389065."""
    valid = lp.item_mask.bool() if lp.item_mask is not None else torch.ones_like(lp.policy, dtype=torch.bool)
    log_w = f32(need(lp.scores, "scores (log target weights ℓ^A + ℓ^P − ℓ^Q')", "steerlm2")).detach()
    pol = f32(lp.policy)
    neg = torch.full_like(pol, _NEG)
    w = torch.softmax(torch.where(valid, log_w, neg), dim=1)
    with torch.no_grad():
        b = torch.softmax(torch.where(valid, ratios(lp, "steerlm2"), neg), dim=1)
    lens = torch.where(valid, f32(lp.lengths), torch.zeros_like(pol))
    mean_len = (lens.sum(1) / valid.sum(1).clamp(min=1)).clamp(min=1)
    per_group = ((w - b) * torch.where(valid, -pol, torch.zeros_like(pol))).sum(1) / mean_len
    kl = torch.where(valid, w * torch.log((w + 1e-8) / (b + 1e-8)), torch.zeros_like(w)).sum(1)
    return per_group.mean(), {"kl_target_baseline": float(kl.mean()),
                              "weights/target_max": float(w.max(1).values.mean()),
                              "weights/baseline_max": float(b.max(1).values.mean())}


__all__ = ["steerlm2"]
