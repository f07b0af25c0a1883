"""Weak-to-strong training with the auxiliary confidence loss (wave2_feedback_safety.md §9.3; Burns et al.,
"Weak-to-Strong Generalization", arXiv 2312.09390, code openai/weak-to-strong `weak_to_strong/loss.py::logconf`;
applied to safety classification by Ye, Xiao, Hui, arXiv 2410.12621).

A classification task is a listwise record with K = 2 label completions (K > 2: see `logconf_loss`) (e.g. " safe" / " unsafe") whose
`scores` are the weak model's soft labels q (normalised per row). The strong model's logits are the summed
completion log-probs z_k = S_θ(y_k), p = softmax(z):

* α_t = aux_coef · (f if f ≤ warmup_frac else 1) with f the training fraction (the code's jump; `ramp="smooth"`
  gives aux_coef · min(1, f / warmup_frac), probably what was intended [uncertain]);
* τ = quantile of p[:, 0] at level mean_batch(q[:, 1]) (linear interpolation), ŝ = one-hot(0 if p_0 ≥ τ else 1),
  detached: the strong model's own predictions re-balanced to the weak labels' class prior;
* t = (1 − α_t)·q + α_t·ŝ, L = mean_batch CE(z, t).

aux_coef = 0 is soft-label cross-entropy (the plain transfer baseline, and with one-hot q the ground-truth
ceiling). The training fraction comes from the objective's persistent state: every training call advances a
counter and f = (calls before this one) / `total_calls`; `total_calls` = optimiser steps × grad_accum
(`alignkit.safety.w2s` sets it). With `total_calls = 0` (or no state) α_t = aux_coef throughout.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import f32
from alignkit.objectives.base import LogProbs, Metrics, register_objective


def aux_alpha(step_frac: float, aux_coef: float = 0.5, warmup_frac: float = 0.1, ramp: str = "step") -> float:
    """α_t of §9.3 step 1."""
    if ramp == "step":
        return aux_coef * (step_frac if step_frac <= warmup_frac else 1.0)
    if ramp == "smooth":
        return aux_coef * (min(1.0, step_frac / warmup_frac) if warmup_frac > 0 else 1.0)
    raise ConfigError(f"ramp must be 'step' (the code) or 'smooth'; got {ramp!r}")


def logconf_loss(logits: Tensor, weak_probs: Tensor, step_frac: float = 1.0, *, aux_coef: float = 0.5,
                 warmup_frac: float = 0.1, ramp: str = "step", valid: Tensor | None = None
                 ) -> tuple[Tensor, dict[str, Any]]:
    """Burns' `logconf` loss on `[B, K]` strong logits and weak soft labels; returns (loss, details).

    K = 2 is the paper's loss (prior-balanced threshold). K > 2 (an alignkit extension; the code is binary)
    hardens by the strong model's argmax, without prior balancing. `valid` `[B, K]` masks padding items of
    ragged lists (they get no probability and no target mass)."""
    if logits.ndim != 2 or logits.shape[1] < 2 or weak_probs.shape != logits.shape:
        raise ConfigError(f"logconf_loss needs [B, K>=2] logits and weak labels of the same shape; got "
                          f"{tuple(logits.shape)} and {tuple(weak_probs.shape)}")
    z = f32(logits)
    q = f32(weak_probs).detach().to(z)
    if valid is not None:
        z = z.masked_fill(~valid, -1e30)
        q = q.masked_fill(~valid, 0.0)
    alpha = aux_alpha(step_frac, aux_coef, warmup_frac, ramp)
    p = torch.softmax(z.detach(), dim=-1)
    tau = float("nan")
    if z.shape[1] == 2:
        prior = q[:, 1].mean().clamp(0.0, 1.0)
        tau_t = torch.quantile(p[:, 0], prior, interpolation="linear")
        hard = torch.where(p[:, 0] >= tau_t, 0, 1)
        tau = float(tau_t)
    else:
        hard = p.argmax(-1)
    s_hat = F.one_hot(hard, z.shape[1]).to(z)
    target = (1.0 - alpha) * q + alpha * s_hat
    logp = torch.log_softmax(z, dim=-1)
    loss = -(torch.where(target > 0, target * logp, torch.zeros_like(logp))).sum(-1).mean()
    return loss, {"alpha": alpha, "threshold": tau, "hard": hard, "target": target}


@register_objective("w2s_confidence", data_kind="listwise", needs_reference=False, aux_coef=0.5, warmup_frac=0.1,
                    ramp="step", total_calls=0, state=None,
                    paper="Burns et al. 2023, Weak-to-Strong Generalization (auxiliary confidence loss); "
                          "Ye et al. 2024 (safety/toxicity/legal)")
def w2s_confidence(lp: LogProbs, aux_coef: float = 0.5, warmup_frac: float = 0.1, ramp: str = "step",
                   total_calls: int = 0, state: dict[str, Any] | None = None) -> tuple[Tensor, Metrics]:
    """Weak-to-strong auxiliary confidence loss over two label completions (spec §9.3; module docstring):
    L = mean_batch CE(z, (1 − α_t)·q + α_t·ŝ). Defaults: aux_coef 0.5, warmup_frac 0.1, ramp "step" (the code's)."""
    if lp.policy.ndim != 2 or lp.policy.shape[1] < 2:
        raise ConfigError(f"w2s_confidence needs lists of label completions, [B, K>=2]; got shape "
                          f"{tuple(lp.policy.shape)}")
    if lp.scores is None:
        raise ConfigError("w2s_confidence needs the weak soft labels as the list's `scores`")
    valid = lp.item_mask.bool() if lp.item_mask is not None else torch.ones_like(lp.policy, dtype=torch.bool)
    q = f32(lp.scores).detach().masked_fill(~valid, 0.0)
    if (q < 0).any() or not torch.isfinite(q).all():
        raise ConfigError("w2s_confidence: weak labels (scores) must be finite and non-negative probabilities")
    total = q.sum(-1, keepdim=True)
    if (total <= 0).any():
        raise ConfigError("w2s_confidence: each row's weak labels must sum to a positive number")
    q = q / total
    frac = 1.0
    if state is not None and total_calls > 0:
        calls = float(state.get("calls", 0.0))
        frac = min(1.0, calls / float(total_calls))
        if not getattr(state, "frozen", False):
            state["calls"] = calls + 1.0
    loss, info = logconf_loss(lp.policy, q, frac, aux_coef=aux_coef, warmup_frac=warmup_frac, ramp=ramp,
                              valid=valid)
    pred = lp.policy.detach().masked_fill(~valid, -1e30).argmax(-1)
    metrics = {"w2s/alpha": float(info["alpha"]), "w2s/step_frac": frac,
               "w2s/agree_weak": float((pred == q.argmax(-1)).float().mean()),
               "w2s/hardened_class1": float(info["hard"].float().mean())}
    return loss, metrics
