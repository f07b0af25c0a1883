"""Pairwise objectives (spec §1, §2.2 pairwise BCO, §6.2): rows are `[chosen, rejected]`, so every `[B, K]`
tensor has K = 2 with column 0 = y_w and column 1 = y_l.

Notation (spec §0): S = summed completion log-prob, A = S/|y|, ρ = S_θ − S_ref, h = ρ(y_w) − ρ(y_l).
Every objective here accepts `sft_weight` (default 0): it adds sft_weight · mean_b[−S_θ(y_w)/|y_w|] (ORPO, whose
NLL is part of the method, defaults it to 1 and pools tokens like TRL; see `orpo`).
Metrics follow TRL's names: rewards/chosen, rewards/rejected, rewards/accuracy, rewards/margin, logps/*.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import (
    add_sft,
    averaged,
    check_shape,
    f32,
    log1mexp,
    need,
    neg_logsigmoid,
    nll_chosen,
    pair_metrics,
    ratios,
    reward_shift,
)
from alignkit.objectives.base import LogProbs, Metrics, register_objective


def _pair_ratios(lp: LogProbs, name: str) -> tuple[Tensor, Tensor]:
    check_shape(lp, name, k=2)
    rho = ratios(lp, name)
    return rho[:, 0], rho[:, 1]


def _mm_dpo_beta(beta: float, h: Tensor, lp: LogProbs, w: float, k: float, mode: str,
                 generator: torch.Generator | None) -> Tensor:
    """Per-pair (paper) or per-batch (released code) β for MM-DPO dynamic reward scaling (spec §6.2)."""
    if mode == "per_pair":
        margins = f32(need(lp.margins, "margins (reward-model margin δ per pair)", "dpo")).detach()
        b = beta * (1.0 + w * (1.0 - torch.exp(-k * margins)))
        return b.clamp(min=1e-3)
    if mode == "batch_beta":
        hd = h.detach()
        if hd.numel() < 2:
            return torch.full_like(hd, beta)
        mu, std = hd.mean(), hd.std().clamp(min=1e-8)
        weights = torch.exp(-0.5 * ((hd - mu) / std) ** 2)
        n = max(1, int(0.8 * hd.numel()))
        idx = torch.multinomial(weights, n, replacement=False, generator=generator)
        b = beta * (1.0 + w * (hd[idx].mean() - mu))
        return b.clamp(min=1e-3).expand_as(hd)
    raise ConfigError(f"objective 'dpo': reward_scaling_mode must be 'per_pair' or 'batch_beta', got {mode!r}")


@register_objective(
    "dpo", data_kind="pairwise", needs_reference=True,
    paper="Rafailov et al. 2023, Direct Preference Optimization (cDPO: Mitchell 2023; MM-DPO: Zhang et al. 2025)",
    beta=0.1, label_smoothing=0.0, reference_free=False, reward_scaling_w=0.0, reward_scaling_k=1.0,
    reward_scaling_mode="per_pair", sft_weight=0.0, generator=None)
def dpo(lp: LogProbs, *, beta: float, label_smoothing: float, reference_free: bool, reward_scaling_w: float,
        reward_scaling_k: float, reward_scaling_mode: str, sft_weight: float,
        generator: torch.Generator | None) -> tuple[Tensor, Metrics]:
    """DPO (spec §1.1) with conservative label smoothing (cDPO, §1.2) and dynamic reward scaling (MM-DPO, §6.2).

    L = (1−ε)·[−log σ(β h)] + ε·[−log σ(−β h)],  h = ρ(y_w) − ρ(y_l)   (ε = `label_smoothing`; ε = 0 is DPO).
    `reference_free=True` uses h = S_θ(y_w) − S_θ(y_l).
    Dynamic β when `reward_scaling_w` ≠ 0:
      `per_pair` (paper): β(δ) = β·(1 + w·(1 − e^{−kδ})), δ = `lp.margins` (RM margin, detached), clamped ≥ 1e-3;
      `batch_beta` (MM-RLHF released code): one β for the batch from a Gaussian-weighted 80 % subsample of h:
      β·(1 + w·(mean(subsample) − mean(h))), clamped ≥ 1e-3 (pass `generator` for reproducibility).
    Defaults: β = 0.1, ε = 0, w = 0 (off), k = 1. Worked: P1, β = 0.1 → 0.6209570; ε = 0.1 → 0.6359570;
    β_ori = 0.1, w = 0.5, k = 0.5, δ = 2, h = 1 → 0.6295076.
    """
    check_shape(lp, "dpo", k=2)
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"objective 'dpo': label_smoothing must lie in [0, 1), got {label_smoothing}")
    pol = f32(lp.policy)
    if reference_free:
        rho_w, rho_l = pol[:, 0], pol[:, 1]
    else:
        rho_w, rho_l = _pair_ratios(lp, "dpo")
    h = rho_w - rho_l
    b: Tensor | float = beta
    metrics: Metrics = {}
    if reward_scaling_w:
        b = _mm_dpo_beta(beta, h, lp, reward_scaling_w, reward_scaling_k, reward_scaling_mode, generator)
        metrics["beta/mean"] = float(b.mean())
    z = b * h
    losses = (1 - label_smoothing) * neg_logsigmoid(z) + label_smoothing * neg_logsigmoid(-z)
    loss = losses.mean()
    metrics.update(pair_metrics(beta * rho_w, beta * rho_l, lp))
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("robust", data_kind="pairwise", needs_reference=True,
                    paper="Chowdhury, Kini, Natarajan 2024, Provably Robust DPO (rDPO)",
                    beta=0.1, label_smoothing=0.1, sft_weight=0.0)
def robust(lp: LogProbs, *, beta: float, label_smoothing: float, sft_weight: float) -> tuple[Tensor, Metrics]:
    """rDPO (spec §1.2): unbiased loss under label-flip rate ε.

    L = {(1−ε)·[−log σ(β h)] − ε·[−log σ(−β h)]} / (1 − 2ε); ε ∈ [0, 0.5); can be negative (not clipped).
    Defaults: β = 0.1, ε = 0.1 (the rDPO paper). TRL `loss_type="robust"`. Worked: P1 → 0.6022070.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ConfigError(f"objective 'robust': label_smoothing (ε) must lie in [0, 0.5), got {label_smoothing}")
    rho_w, rho_l = _pair_ratios(lp, "robust")
    z = beta * (rho_w - rho_l)
    eps = label_smoothing
    loss = (((1 - eps) * neg_logsigmoid(z) - eps * neg_logsigmoid(-z)) / (1 - 2 * eps)).mean()
    metrics = pair_metrics(beta * rho_w, beta * rho_l, lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("ipo", data_kind="pairwise", needs_reference=True,
                    paper="Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from Human "
                          "Preferences (IPO)",
                    beta=0.1, normalize=True, sft_weight=0.0)
def ipo(lp: LogProbs, *, beta: float, normalize: bool, sft_weight: float) -> tuple[Tensor, Metrics]:
    """IPO (spec §1.3): L = (h − 1/(2τ))², τ = `beta`.

    `normalize=True` (default, TRL/HALOs): h = ρ(y_w)/|y_w| − ρ(y_l)/|y_l|; `normalize=False`: summed h
    (eric-mitchell). Defaults: τ = 0.1 (target gap 5). Worked: P1 → 21.855625 (averaged) / 12.25 (summed).
    """
    rho_w, rho_l = _pair_ratios(lp, "ipo")
    if normalize:
        lens = f32(lp.lengths).clamp(min=1)
        rho_w, rho_l = rho_w / lens[:, 0], rho_l / lens[:, 1]
    loss = ((rho_w - rho_l - 1.0 / (2.0 * beta)) ** 2).mean()
    metrics = pair_metrics(beta * rho_w, beta * rho_l, lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("hinge", data_kind="pairwise", needs_reference=True,
                    paper="Liu et al. 2023, Statistical Rejection Sampling Improves Preference Optimization "
                          "(RSO hinge-norm)",
                    beta=0.1, sft_weight=0.0)
def hinge(lp: LogProbs, *, beta: float, sft_weight: float) -> tuple[Tensor, Metrics]:
    """RSO hinge-norm (spec §1.4): L = max(0, 1 − β h). β = γ is the reciprocal margin.

    Default β = 0.1 (TRL `loss_type="hinge"`; the RSO paper used γ = 0.05). Worked: P1, β = 0.05 → 0.925.
    """
    rho_w, rho_l = _pair_ratios(lp, "hinge")
    loss = torch.relu(1.0 - beta * (rho_w - rho_l)).mean()
    metrics = pair_metrics(beta * rho_w, beta * rho_l, lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("slic", data_kind="pairwise", needs_reference=False,
                    paper="Zhao et al. 2023, SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
                    delta=1.0, reg_weight=0.1, sft_weight=0.0)
def slic(lp: LogProbs, *, delta: float, reg_weight: float, sft_weight: float) -> tuple[Tensor, Metrics]:
    """SLiC-HF (spec §1.4): L = max(0, δ − S_θ(y_w) + S_θ(y_l)) + λ·(−S_θ(y_ref)), with y_ref = y_w.

    No reference model; summed log-probs; the regulariser is the *summed* NLL of y_w (HALOs). Defaults: δ = 1,
    λ = `reg_weight` = 0.1 (HALOs). Worked: P1 → 0 calibration, 1.0 total.
    """
    check_shape(lp, "slic", k=2)
    pol = f32(lp.policy)
    cal = torch.relu(delta - pol[:, 0] + pol[:, 1])
    loss = (cal + reg_weight * (-pol[:, 0])).mean()
    metrics = pair_metrics(pol[:, 0], pol[:, 1], lp)
    metrics["calibration_loss"] = float(cal.detach().mean())
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("simpo", data_kind="pairwise", needs_reference=False,
                    paper="Meng, Xia, Chen 2024, SimPO: Simple Preference Optimization with a Reference-Free Reward",
                    beta=2.0, gamma=0.5, gamma_beta_ratio=None, label_smoothing=0.0, sft_weight=0.0)
def simpo(lp: LogProbs, *, beta: float, gamma: float, gamma_beta_ratio: float | None, label_smoothing: float,
          sft_weight: float) -> tuple[Tensor, Metrics]:
    """SimPO (spec §1.5): L = −log σ(β·A_θ(y_w) − β·A_θ(y_l) − γ), A = average per-token log-prob.

    γ is absolute (`gamma`, TRL CPO `simpo_gamma`); pass `gamma_beta_ratio` to use the official code's γ/β form
    instead. `label_smoothing` gives the official code's cDPO-style variant. Defaults: β = 2.0, γ = 0.5 (= the
    official γ/β = 0.25 at β = 2). Worked: P1 → 0.2014133.
    """
    check_shape(lp, "simpo", k=2)
    a = averaged(lp)
    g = gamma_beta_ratio * beta if gamma_beta_ratio is not None else gamma
    z = beta * (a[:, 0] - a[:, 1]) - g
    loss = ((1 - label_smoothing) * neg_logsigmoid(z) + label_smoothing * neg_logsigmoid(-z)).mean()
    metrics = pair_metrics(beta * a[:, 0], beta * a[:, 1], lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("orpo", data_kind="pairwise", needs_reference=False,
                    paper="Hong, Lee, Thorne 2024, ORPO: Monolithic Preference Optimization without Reference Model",
                    beta=0.1, sft_weight=1.0, nll_reduction="token")
def orpo(lp: LogProbs, *, beta: float, sft_weight: float, nll_reduction: str) -> tuple[Tensor, Metrics]:
    """ORPO (spec §1.6): L = sft_weight·NLL(y_w) + λ·mean_b[−log σ(ℓ)], λ = `beta`,
    ℓ = [A_w − log(1 − e^{A_w})] − [A_l − log(1 − e^{A_l})] (stable log1mexp, fp32).

    ORPO's own NLL term *is* the shared `sft_weight` term, so here it defaults to 1 (the paper).
    `nll_reduction="token"` (default, TRL's `ORPOTrainer`: one `CrossEntropyLoss` over the batch's chosen
    tokens) pools the tokens: NLL = −Σ_b S_θ(y_w,b) / Σ_b |y_w,b|, so a long chosen answer weighs more;
    `"example"` averages per example, mean_b[−S_θ(y_w,b)/|y_w,b|] (the other objectives' `sft_weight` term).
    Both score completion tokens only (prompt masked, the spec's recommendation); TRL 1.16 and the official
    code also put the prompt tokens in the NLL, which the engine never scores (DESIGN: log-probs only at
    completion positions). Defaults: λ = 0.1 (paper, TRL). Worked: P1 → L_OR 0.2887508, total 2.0288751.
    """
    check_shape(lp, "orpo", k=2)
    a = averaged(lp)
    log_odds = (a[:, 0] - a[:, 1]) - (log1mexp(a[:, 0]) - log1mexp(a[:, 1]))
    l_or = neg_logsigmoid(log_odds)
    if nll_reduction == "token":
        nll = -f32(lp.policy)[:, 0].sum() / f32(lp.lengths)[:, 0].sum().clamp(min=1)
    elif nll_reduction == "example":
        nll = nll_chosen(lp).mean()
    else:
        raise ConfigError(f"objective 'orpo': nll_reduction must be 'token' or 'example', got {nll_reduction!r}")
    metrics = pair_metrics(beta * a[:, 0], beta * a[:, 1], lp)
    metrics["log_odds_ratio"] = float(log_odds.detach().mean())
    metrics["or_loss"] = float(l_or.detach().mean())
    metrics["nll_loss"] = float(nll.detach())
    return beta * l_or.mean() + sft_weight * nll, metrics


@register_objective("nca", data_kind="pairwise", needs_reference=True,
                    paper="Chen et al. 2024, Noise Contrastive Alignment of Language Models with Explicit Rewards",
                    beta=0.1, sft_weight=0.0)
def nca(lp: LogProbs, *, beta: float, sft_weight: float) -> tuple[Tensor, Metrics]:
    """NCA, pairwise form (TRL `nca_pair`): L = −log σ(βρ_w) − ½ log σ(−βρ_w) − ½ log σ(−βρ_l). Default β = 0.1."""
    rho_w, rho_l = _pair_ratios(lp, "nca")
    rw, rl = beta * rho_w, beta * rho_l
    loss = (neg_logsigmoid(rw) + 0.5 * neg_logsigmoid(-rw) + 0.5 * neg_logsigmoid(-rl)).mean()
    metrics = pair_metrics(rw, rl, lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("bco_pair", data_kind="pairwise", needs_reference=True,
                    paper="Jung et al. 2024, Binary Classifier Optimization for Large Language Model Alignment",
                    beta=0.1, use_shift=True, delta_mode="pooled", state=None, sft_weight=0.0)
def bco_pair(lp: LogProbs, *, beta: float, use_shift: bool, delta_mode: str, state: dict[str, Any] | None,
             sft_weight: float) -> tuple[Tensor, Metrics]:
    """Pairwise BCO (spec §2.2): L = −log σ(βρ_w − δ) − log σ(−(βρ_l − δ)).

    δ = detached running mean of every implicit reward r = βρ seen so far (this batch included, updated before
    the loss). It lives in `state` (see `alignkit.objectives._common`: the engine passes one persistent dict and
    checkpoints it; keys `delta` or `delta_desirable`/`delta_undesirable`, each {"mean", "count"}).
    `delta_mode="pooled"` is TRL's count-weighted pooled mean; `"class_mean"` the paper's mean of class means.
    `use_shift=False` sets δ = 0, which is what TRL 1.x's `loss_type="bco_pair"` computes. Default β = 0.1.
    """
    rho_w, rho_l = _pair_ratios(lp, "bco_pair")
    rw, rl = beta * rho_w, beta * rho_l
    delta = 0.0
    if use_shift:
        rewards = torch.cat([rw, rl])
        desirable = torch.cat([torch.ones_like(rw, dtype=torch.bool), torch.zeros_like(rl, dtype=torch.bool)])
        delta = reward_shift(state, rewards, desirable, delta_mode, "bco_pair")
    loss = (neg_logsigmoid(rw - delta) + neg_logsigmoid(-(rl - delta))).mean()
    metrics = pair_metrics(rw, rl, lp)
    metrics["delta"] = float(delta)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("apo_zero", data_kind="pairwise", needs_reference=True,
                    paper="D'Oosterlinck et al. 2024, Anchored Preference Optimization (APO-zero)",
                    beta=0.1, sft_weight=0.0)
def apo_zero(lp: LogProbs, *, beta: float, sft_weight: float) -> tuple[Tensor, Metrics]:
    """APO-zero (TRL `apo_zero`, APO eq. 7): L = (1 − σ(βρ_w)) + σ(βρ_l): raise y_w, lower y_l. Default β = 0.1."""
    rho_w, rho_l = _pair_ratios(lp, "apo_zero")
    rw, rl = beta * rho_w, beta * rho_l
    loss = ((1 - torch.sigmoid(rw)) + torch.sigmoid(rl)).mean()
    metrics = pair_metrics(rw, rl, lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("sppo_hard", data_kind="pairwise", needs_reference=True,
                    paper="Wu et al. 2024, Self-Play Preference Optimization (hard-label SPPO)",
                    beta=0.1, sft_weight=0.0)
def sppo_hard(lp: LogProbs, *, beta: float, sft_weight: float) -> tuple[Tensor, Metrics]:
    """SPPO, hard probabilities (TRL `sppo_hard`): L = (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))². Default β = 0.1."""
    rho_w, rho_l = _pair_ratios(lp, "sppo_hard")
    loss = ((rho_w - 0.5 / beta) ** 2 + (rho_l + 0.5 / beta) ** 2).mean()
    metrics = pair_metrics(beta * rho_w, beta * rho_l, lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


@register_objective("discopop", data_kind="pairwise", needs_reference=True,
                    paper="Chan et al. 2024, Discovering Preference Optimization Algorithms with and for LLMs "
                          "(DiscoPOP)",
                    beta=0.1, tau=0.05, sft_weight=0.0)
def discopop(lp: LogProbs, *, beta: float, tau: float, sft_weight: float) -> tuple[Tensor, Metrics]:
    """DiscoPOP / log-ratio modulated loss (TRL `discopop`, paper eq. 5), with z = β h and m = σ(z/τ):
    L = (1 − m)·[−log σ(z)] + m·e^{−z}. Defaults: β = 0.1, τ = 0.05 (paper, TRL `discopop_tau`)."""
    if tau <= 0:
        raise ConfigError(f"objective 'discopop': tau must be > 0, got {tau}")
    rho_w, rho_l = _pair_ratios(lp, "discopop")
    z = beta * (rho_w - rho_l)
    m = torch.sigmoid(z / tau)
    loss = (neg_logsigmoid(z) * (1 - m) + torch.exp(-z) * m).mean()
    metrics = pair_metrics(beta * rho_w, beta * rho_l, lp)
    return add_sft(loss, lp, sft_weight, metrics), metrics


__all__ = ["apo_zero", "bco_pair", "discopop", "dpo", "hinge", "ipo", "nca", "orpo", "robust", "simpo", "slic",
           "sppo_hard"]
