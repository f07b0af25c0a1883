"""Distillation objectives for small models, DCKD and ADPA (spec §5, Gao et al. 2025).

Pairwise rows (K = 2). Teacher token distributions are top-k compressed; the engine gathers everything at the
same ids, so the loss needs no vocabulary-sized tensor. Tensors in `lp.extras` (T = completion positions,
k = top-k size; padding positions are excluded by `lp.token_mask` `[B, 2, T]`):
  `teacher_topk_ids`       `[B, 2, T, k]` long: the vocabulary ids (for ADPA, the union of both teachers' top-k);
                           the loss only checks its shape, the engine uses it to gather the tensors below;
  `teacher_topk_logp`      `[B, 2, T, k]`: log π_dpo(v | x, y_<t) at those ids (the DPO-aligned teacher);
  `ref_teacher_topk_logp`  `[B, 2, T, k]`: log π_ref^T(v | ·) (the teacher's SFT reference; ADPA only);
  `policy_topk_logp`       `[B, 2, T, k]`: log π_θ(v | ·) of the student, gathered at the ids, differentiable.
Missing teacher entries should be filled with the minimum top-k log-prob; every probability is floored at 1e-7.
The SFT term uses the usual `lp.policy`/`lp.lengths` of column 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import LOG_PROB_FLOOR, check_shape, f32, need, need_extra, nll_chosen
from alignkit.objectives.base import LogProbs, Metrics, register_objective


def _topk(lp: LogProbs, key: str, name: str, shape: tuple[int, ...] | None = None) -> Tensor:
    x = need_extra(lp, key, name)
    if x.dim() != 4 or x.shape[1] != 2:
        raise ConfigError(f"objective {name!r}: extras[{key!r}] must be [B, 2, T, k], got {tuple(x.shape)}")
    if shape is not None and tuple(x.shape) != shape:
        raise ConfigError(f"objective {name!r}: extras[{key!r}] has shape {tuple(x.shape)}, expected {shape}")
    return x


def _mask(lp: LogProbs, shape: tuple[int, ...], name: str) -> Tensor:
    mask = need(lp.token_mask, "token_mask", name).bool()
    if tuple(mask.shape) != shape[:3]:
        raise ConfigError(f"objective {name!r}: token_mask has shape {tuple(mask.shape)}, expected {shape[:3]}")
    return mask


def _position_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid positions per (row, column): `[B, 2, T]` → `[B, 2]`."""
    return torch.where(mask, x, torch.zeros_like(x)).sum(-1) / mask.sum(-1).clamp(min=1)


@register_objective("dckd", data_kind="pairwise", needs_reference=False, needs_teacher=True, token_level=True,
                    needs_extras=("teacher_topk_ids", "teacher_topk_logp", "policy_topk_logp"),
                    paper="Gao et al. 2025, Advantage-Guided Distillation for Preference Alignment in Small "
                          "Language Models (DCKD)",
                    sft_weight=1.0, chosen_weight=1.0, rejected_weight=1.0)
def dckd(lp: LogProbs, *, sft_weight: float, chosen_weight: float,
         rejected_weight: float) -> tuple[Tensor, Metrics]:
    """DCKD (spec §5.1): L = w_sft·NLL̄(y_w) + w_w·KL̄(π_dpo‖π_θ; y_w) + w_l·KL̄(π_dpo‖π_θ; y_l).

    KL̄(p‖q; y) = mean_t Σ_{v ∈ top-k} p(v)·[log p(v) − log q(v)] (forward KL, teacher-forced on y, restricted to
    the teacher's top-k support, not renormalised; log q floored at log 1e-7). Teacher values are detached.
    Defaults: all weights 1 (the paper's are unverified). Worked: p = [.7, .2, .1], q = [.5, .3, .2] → 0.0851228.
    """
    check_shape(lp, "dckd", k=2)
    teacher = _topk(lp, "teacher_topk_logp", "dckd")
    shape = tuple(teacher.shape)
    _topk(lp, "teacher_topk_ids", "dckd", shape)
    student = f32(_topk(lp, "policy_topk_logp", "dckd", shape)).clamp(min=LOG_PROB_FLOOR)
    mask = _mask(lp, shape, "dckd")
    t = f32(teacher).detach().clamp(min=LOG_PROB_FLOOR)
    kl = (t.exp() * (t - student)).sum(-1)  # [B, 2, T]
    kl = _position_mean(kl, mask)  # [B, 2]
    nll = nll_chosen(lp).mean()
    loss = sft_weight * nll + chosen_weight * kl[:, 0].mean() + rejected_weight * kl[:, 1].mean()
    return loss, {"nll_loss": float(nll.detach()), "kl/chosen": float(kl[:, 0].detach().mean()),
                  "kl/rejected": float(kl[:, 1].detach().mean())}


@register_objective("adpa", data_kind="pairwise", needs_reference=False, needs_teacher=True, token_level=True,
                    needs_extras=("teacher_topk_ids", "teacher_topk_logp", "ref_teacher_topk_logp",
                                  "policy_topk_logp"),
                    paper="Gao et al. 2025, Advantage-Guided Distillation for Preference Alignment in Small "
                          "Language Models (ADPA)",
                    sft_weight=1.0, adpa_weight=1.0, beta=1.0)
def adpa(lp: LogProbs, *, sft_weight: float, adpa_weight: float, beta: float) -> tuple[Tensor, Metrics]:
    """ADPA (spec §5.2): L = w_sft·NLL̄(y_w) − w_adpa·mean_t Σ_{a ∈ support} π_θ(a|s_t)·A(s_t, a),
    A = β·[log π_dpo(a|s_t) − log π_ref^T(a|s_t)] (detached), t over the positions of column 1.

    Column 0 holds the dataset's y_w (SFT term); column 1 holds the *student's own sample* y^S whose prefixes are
    the states s_t. β is usually absorbed into w_adpa (default β = 1, all weights 1).
    Worked: π_dpo = [.6, .3, .1], π_ref = [.5, .3, .2], π_θ = [.5, .3, .2] → 0.0474687.
    """
    check_shape(lp, "adpa", k=2)
    teacher = _topk(lp, "teacher_topk_logp", "adpa")
    shape = tuple(teacher.shape)
    _topk(lp, "teacher_topk_ids", "adpa", shape)
    ref = _topk(lp, "ref_teacher_topk_logp", "adpa", shape)
    student = f32(_topk(lp, "policy_topk_logp", "adpa", shape))
    mask = _mask(lp, shape, "adpa")
    adv = beta * (f32(teacher).clamp(min=LOG_PROB_FLOOR) - f32(ref).clamp(min=LOG_PROB_FLOOR)).detach()
    gain = (student[:, 1].exp() * adv[:, 1]).sum(-1)  # [B, T]: expected teacher advantage of the student's step
    gain = _position_mean(gain.unsqueeze(1), mask[:, 1:2]).squeeze(1)
    adpa_term = -gain.mean()
    nll = nll_chosen(lp).mean()
    loss = sft_weight * nll + adpa_weight * adpa_term
    return loss, {"nll_loss": float(nll.detach()), "adpa_loss": float(adpa_term.detach()),
                  "advantage/mean": float(gain.detach().mean())}
