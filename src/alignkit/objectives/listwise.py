"""Listwise objectives (spec §3): rows are ranked lists, `[B, K]` tensors with K = the (padded) list length,
`lp.item_mask` `[B, K]` (False = padding, ragged lists) and per-item labels in `lp.scores` `[B, K]` (ψ, higher
is better). AFT also accepts binary `lp.labels` `[B, K]` (True = correct COT).

Conventions shared by every function here (spec §3.1 edge cases, §11 tie table):
* a pair (i, j) counts only when both items are valid and ψ_i > ψ_j strictly, so tied items form no pair;
* a list that yields no pair (K = 1, all-equal ψ, one valid item) is skipped: it adds nothing and is not
  counted in the batch mean; `lists/skipped` reports how many were skipped;
* the batch loss is the mean over the lists that were not skipped (an all-skipped batch gives a zero loss that
  is still attached to the graph);
* ordering by ψ (list-MLE, PRO) and by the model's scores (LiPO-λ ranks) is a stable sort: ties keep index order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import averaged, check_shape, f32, need, ratios, zero_loss
from alignkit.objectives.base import LogProbs, Metrics, mean_metric, register_objective

_NEG = -1e30  # stands in for −inf on padding so logsumexp stays finite and its gradient stays zero


def _valid(lp: LogProbs) -> Tensor:
    if lp.item_mask is None:
        return torch.ones_like(lp.policy, dtype=torch.bool)
    if lp.item_mask.shape != lp.policy.shape:
        raise ConfigError(f"LogProbs.item_mask has shape {tuple(lp.item_mask.shape)}, expected "
                          f"{tuple(lp.policy.shape)}")
    return lp.item_mask.bool()


def _labels(lp: LogProbs, name: str, valid: Tensor) -> Tensor:
    psi = f32(need(lp.scores, "scores (per-item labels ψ, higher is better)", name)).detach()
    if psi.shape != lp.policy.shape:
        raise ConfigError(f"objective {name!r}: LogProbs.scores has shape {tuple(psi.shape)}, expected "
                          f"{tuple(lp.policy.shape)}")
    if not torch.isfinite(psi[valid]).all():
        raise ConfigError(f"objective {name!r}: LogProbs.scores holds non-finite labels on valid items")
    return torch.where(valid, psi, torch.zeros_like(psi))


def _pairs(psi: Tensor, valid: Tensor) -> Tensor:
    """`[B, K, K]` bool: M[b, i, j] = both valid and ψ_i > ψ_j (i is the better item)."""
    both = valid.unsqueeze(2) & valid.unsqueeze(1)
    return both & (psi.unsqueeze(2) > psi.unsqueeze(1))


def _reduce_lists(per_list: Tensor, active: Tensor, like: Tensor) -> tuple[Tensor, Metrics]:
    metrics = {"lists/skipped": float((~active).sum()), "lists/used": float(active.sum())}
    if not active.any():
        return zero_loss(like), metrics
    return per_list[active].mean(), metrics


def _lipo_scores(lp: LogProbs, name: str, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    check_shape(lp, name)
    valid = _valid(lp)
    s = beta * ratios(lp, name)
    s = torch.where(valid, s, torch.zeros_like(s))  # padding may hold anything; keep it out of every gradient
    return s, _labels(lp, name, valid), valid


def _pairwise_reduce(term: Tensor, m: Tensor, reduction: str, name: str) -> tuple[Tensor, Tensor]:
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"objective {name!r}: reduction must be 'sum' or 'mean', got {reduction!r}")
    n_pairs = m.sum(dim=(1, 2))
    per_list = torch.where(m, term, torch.zeros_like(term)).sum(dim=(1, 2))
    if reduction == "mean":
        per_list = per_list / n_pairs.clamp(min=1)
    return per_list, n_pairs > 0


def _score_metrics(s: Tensor, valid: Tensor) -> Metrics:
    return {"rewards/mean": mean_metric(s[valid])}


@register_objective("lipo_lambda", data_kind="listwise", needs_reference=True,
                    paper="Liu et al. 2024, LiPO: Listwise Preference Optimization through Learning-to-Rank",
                    beta=0.05, log_base="e", reduction="sum")
def lipo_lambda(lp: LogProbs, *, beta: float, log_base: str | float, reduction: str) -> tuple[Tensor, Metrics]:
    """LiPO-λ (spec §3.1): L = Σ_{ψ_i > ψ_j} Δ_ij · log(1 + e^{−(s_i − s_j)}), s = β·ρ.

    Δ_ij = |G_i − G_j|·|1/D(π_i) − 1/D(π_j)|, G = 2^ψ − 1, D(π) = log(1 + π), π = 1-based rank of the item under
    the *detached* current scores s (stable descending sort; no gradient flows through Δ).
    `log_base` "e" (default, the paper's log) or "2" (DCG convention; rescales Δ by ln 2); `reduction` "sum"
    (default, the paper) or "mean" over the list's valid pairs. Defaults β = 0.05 (paper).
    Worked: s = [1, 3, −2], ψ = [1, .5, 0] → 0.6745846 (ln) / 0.4675864 (log₂).
    """
    s, psi, valid = _lipo_scores(lp, "lipo_lambda", beta)
    base = math.e if str(log_base) == "e" else float(log_base)
    if base <= 1:
        raise ConfigError(f"objective 'lipo_lambda': log_base must be 'e' or a number > 1, got {log_base!r}")
    with torch.no_grad():
        key = torch.where(valid, s, torch.full_like(s, -math.inf))
        order = torch.sort(key, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        positions = torch.arange(1, s.shape[1] + 1, device=s.device).expand_as(order)
        rank.scatter_(1, order, positions)
        inv_d = math.log(base) / torch.log1p(rank.to(s.dtype))
        gain = torch.pow(2.0, psi) - 1.0
        delta = (gain.unsqueeze(2) - gain.unsqueeze(1)).abs() * (inv_d.unsqueeze(2) - inv_d.unsqueeze(1)).abs()
    m = _pairs(psi, valid)
    term = delta * F.softplus(-(s.unsqueeze(2) - s.unsqueeze(1)))
    per_list, active = _pairwise_reduce(term, m, reduction, "lipo_lambda")
    loss, metrics = _reduce_lists(per_list, active, s)
    return loss, {**metrics, **_score_metrics(s, valid)}


@register_objective("pair_logistic", data_kind="listwise", needs_reference=True,
                    paper="Liu et al. 2024, LiPO (pair-logistic = DPO-BT over all pairs)",
                    beta=0.05, reduction="sum")
def pair_logistic(lp: LogProbs, *, beta: float, reduction: str) -> tuple[Tensor, Metrics]:
    """LiPO pair-logistic (spec §3.1): L = Σ_{ψ_i > ψ_j} log(1 + e^{−(s_i − s_j)}), s = β·ρ.
    Defaults β = 0.05, reduction "sum". Worked (s given) → 2.1822307."""
    s, psi, valid = _lipo_scores(lp, "pair_logistic", beta)
    term = F.softplus(-(s.unsqueeze(2) - s.unsqueeze(1)))
    per_list, active = _pairwise_reduce(term, _pairs(psi, valid), reduction, "pair_logistic")
    loss, metrics = _reduce_lists(per_list, active, s)
    return loss, {**metrics, **_score_metrics(s, valid)}


@register_objective("pair_hinge", data_kind="listwise", needs_reference=True,
                    paper="Liu et al. 2024, LiPO (pair-hinge = SLiC over all pairs)",
                    beta=0.05, reduction="sum")
def pair_hinge(lp: LogProbs, *, beta: float, reduction: str) -> tuple[Tensor, Metrics]:
    """LiPO pair-hinge (spec §3.1): L = Σ_{ψ_i > ψ_j} max(0, 1 − (s_i − s_j)), s = β·ρ.
    Defaults β = 0.05, reduction "sum". Worked (s given) → 3.0."""
    s, psi, valid = _lipo_scores(lp, "pair_hinge", beta)
    term = torch.relu(1.0 - (s.unsqueeze(2) - s.unsqueeze(1)))
    per_list, active = _pairwise_reduce(term, _pairs(psi, valid), reduction, "pair_hinge")
    loss, metrics = _reduce_lists(per_list, active, s)
    return loss, {**metrics, **_score_metrics(s, valid)}


def _sort_by_labels(psi: Tensor, valid: Tensor) -> Tensor:
    key = torch.where(valid, psi, torch.full_like(psi, -math.inf))
    return torch.sort(key, dim=1, descending=True, stable=True).indices


@register_objective("listmle", data_kind="listwise", needs_reference=True,
                    paper="Liu et al. 2024, LiPO (list-MLE = DPO with a Plackett-Luce model)", beta=0.05)
def listmle(lp: LogProbs, *, beta: float) -> tuple[Tensor, Metrics]:
    """List-MLE / DPO-PL (spec §3.1): L = −Σ_k [s_τ(k) − log Σ_{m≥k} e^{s_τ(m)}], τ sorts ψ descending.

    Tied ψ are ordered by index (stable, deterministic). Default β = 0.05. Worked (s given) → 2.1395606.
    """
    s, psi, valid = _lipo_scores(lp, "listmle", beta)
    order = _sort_by_labels(psi, valid)
    s_sorted, v_sorted = s.gather(1, order), valid.gather(1, order)
    masked = torch.where(v_sorted, s_sorted, torch.full_like(s_sorted, _NEG))
    suffix_lse = torch.logcumsumexp(masked.flip(1), dim=1).flip(1)
    terms = torch.where(v_sorted, suffix_lse - s_sorted, torch.zeros_like(s_sorted))
    active = valid.sum(1) >= 2
    active = active & (_pairs(psi, valid).sum(dim=(1, 2)) > 0)
    loss, metrics = _reduce_lists(terms.sum(1), active, s)
    return loss, {**metrics, **_score_metrics(s, valid)}


@register_objective("listnet", data_kind="listwise", needs_reference=True,
                    paper="Liu et al. 2024, LiPO (softmax cross-entropy, ListNet-style)",
                    beta=0.05, label_norm="sum")
def listnet(lp: LogProbs, *, beta: float, label_norm: str) -> tuple[Tensor, Metrics]:
    """Softmax cross-entropy (spec §3.1): L = −Σ_k w_k · log softmax(s)_k, s = β·ρ.

    `label_norm="sum"` (default, the spec): w = ψ/Σψ, needs ψ ≥ 0; lists with Σψ = 0 are skipped (undefined).
    `label_norm="softmax"`: w = softmax(ψ), for labels of any sign. Lists with all-equal ψ carry no ranking and
    are skipped. Default β = 0.05. Worked (s given) → 1.4661786.
    """
    s, psi, valid = _lipo_scores(lp, "listnet", beta)
    if label_norm == "sum":
        if (psi[valid] < 0).any():
            raise ConfigError("objective 'listnet': label_norm='sum' needs non-negative scores; "
                              "use label_norm='softmax' for signed labels")
        total = psi.sum(1, keepdim=True)
        w = psi / total.clamp(min=1e-12)
        active = total.squeeze(1) > 0
    elif label_norm == "softmax":
        w = torch.softmax(torch.where(valid, psi, torch.full_like(psi, _NEG)), dim=1)
        active = torch.ones(psi.shape[0], dtype=torch.bool, device=psi.device)
    else:
        raise ConfigError(f"objective 'listnet': label_norm must be 'sum' or 'softmax', got {label_norm!r}")
    active = active & (_pairs(psi, valid).sum(dim=(1, 2)) > 0)
    log_p = torch.log_softmax(torch.where(valid, s, torch.full_like(s, _NEG)), dim=1)
    per_list = -torch.where(valid, w * log_p, torch.zeros_like(log_p)).sum(1)
    loss, metrics = _reduce_lists(per_list, active, s)
    return loss, {**metrics, **_score_metrics(s, valid)}


@register_objective("pro", data_kind="listwise", needs_reference=False,
                    paper="Song et al. 2023, Preference Ranking Optimization for Human Alignment (PRO)",
                    sft_weight=0.05, use_temperature=True)
def pro(lp: LogProbs, *, sft_weight: float, use_temperature: bool) -> tuple[Tensor, Metrics]:
    """PRO (spec §3.2). Items are sorted by reward r = `lp.scores` (descending, stable); p_k = A_θ(y^k).

    For each position k with a later item: d_{k,i} = r_k − r_i (i > k), d_{k,k} = max_i d_{k,i};
    L_k = −log[e^{p_k d_kk} / (1e-10 + e^{p_k d_kk} + Σ_{i>k} e^{p_i d_ki})] (the official code's 1e-10);
    L_PRO = Σ_k mean over lists reaching k of L_k.
    SFT term: sft_weight·(n − 1)²·mean_b[−S_θ(y¹)] with the *summed* log-prob of the best item (official code);
    for a one-item list (n − 1)² would drop the SFT term, so max(n − 1, 1)² is used and the list trains by SFT
    alone. `use_temperature=False` is the paper's "PRO w/o T": plain p_k logits (all d ≡ 1).
    Defaults sft_weight = 0.05 (×(n−1)²). Worked: p = [−1, −1.5, −2], r = [2, 1, .5], S(y¹) = −10 → 3.3748556.
    """
    check_shape(lp, "pro")
    valid = _valid(lp)
    r = _labels(lp, "pro", valid)
    order = _sort_by_labels(r, valid)
    p = averaged(lp).gather(1, order)
    r, v = r.gather(1, order), valid.gather(1, order)
    p = torch.where(v, p, torch.zeros_like(p))
    bsz, k_max = p.shape
    n = v.sum(1)
    rank_loss = zero_loss(p)
    for k in range(k_max - 1):
        later = v[:, k + 1:]
        active = v[:, k] & later.any(1)
        if not active.any():
            continue
        if use_temperature:
            gaps = r[:, k:k + 1] - r[:, k + 1:]
            pos_scale = torch.where(later, gaps, torch.full_like(gaps, -math.inf)).max(1).values
            pos_scale = torch.where(active, pos_scale, torch.zeros_like(pos_scale))
            pos = p[:, k] * pos_scale
            neg = p[:, k + 1:] * gaps
        else:
            pos, neg = p[:, k], p[:, k + 1:]
        logits = torch.cat([pos.unsqueeze(1), torch.where(later, neg, torch.full_like(neg, _NEG))], dim=1)
        lse = torch.logaddexp(torch.logsumexp(logits, dim=1), torch.tensor(math.log(1e-10), device=p.device))
        rank_loss = rank_loss + (lse - pos)[active].mean()
    top_summed = f32(lp.policy).gather(1, order)[:, 0]
    has_item = n > 0
    scale = (n.clamp(min=2) - 1).float() ** 2
    sft_term = (sft_weight * scale * -top_summed)[has_item].mean() if has_item.any() else zero_loss(p)
    loss = rank_loss + sft_term
    return loss, {"rank_loss": float(rank_loss.detach()), "sft_loss": float(sft_term.detach()),
                  "lists/used": float(has_item.sum()), "lists/skipped": float((~has_item).sum())}


@register_objective("aft", data_kind="listwise", needs_reference=False,
                    paper="Wang et al. 2023, Making Large Language Models Better Reasoners with Alignment (AFT)",
                    variant="bc", boundary=None, nll_weight=1.0)
def aft(lp: LogProbs, *, variant: str, boundary: float | None, nll_weight: float) -> tuple[Tensor, Metrics]:
    """AFT constraint alignment (spec §3.3); s = A_θ (length-normalised, no reference).

    Preferences: binary from `lp.labels` (True = correct COT) when given, else ranked from `lp.scores`
    (higher = better; 0/1 scores reduce to binary). Over pairs i ≻ j:
      `variant="a"`:  L_A  = log(1 + Σ_{i≻j} e^{s_j − s_i});
      `variant="dc"`: L_DC = log(1 + Σ_{i≻j} e^{sg(s_j) − s_i})  (worse items get no gradient);
      `variant="bc"`: L_BC = L_A + log(1 + Σ_j e^{T_j − s_j}), T_j = sg(min_{i≻j} s_i) − B, over every item j
                      that has a better one (binary: all negatives, T = sg(min positive) − B).
    Plus nll_weight·mean over the best-group items of −A_θ (SFT on correct COTs; weight 1 by default, spec's
    [uncertain] choice). `boundary` B is required for "bc" (no default: the paper tunes it per model).
    Lists with no positive or no negative contribute only the NLL term.
    Worked: s_P = [−.5, −.7], s_N = [−.6, −1.2], B = .5 → L_A = L_DC = 1.4141829, L_BC = 2.3498101.
    """
    check_shape(lp, "aft")
    if variant not in ("a", "dc", "bc"):
        raise ConfigError(f"objective 'aft': variant must be 'a', 'dc' or 'bc', got {variant!r}")
    if variant == "bc" and boundary is None:
        raise ConfigError("objective 'aft': variant 'bc' needs `boundary` (B); try 0.1, 0.5 or 1.0")
    valid = _valid(lp)
    if lp.labels is not None:
        psi = torch.where(valid, lp.labels.reshape(valid.shape).float(), torch.zeros_like(f32(lp.policy)))
    else:
        psi = _labels(lp, "aft", valid)
    s = torch.where(valid, averaged(lp), torch.zeros_like(f32(lp.policy)))
    m = _pairs(psi, valid)
    worse = s.detach() if variant == "dc" else s
    diff = worse.unsqueeze(1) - s.unsqueeze(2)  # [b, i, j] = s_j − s_i for i ≻ j
    flat = torch.where(m, diff, torch.full_like(diff, _NEG)).flatten(1)
    zeros = torch.zeros(s.shape[0], 1, device=s.device)
    per_list = torch.logsumexp(torch.cat([zeros, flat], dim=1), dim=1)
    metrics: Metrics = {"align_loss": 0.0}
    if variant == "bc":
        better_min = torch.where(m, s.detach().unsqueeze(2), torch.full_like(diff, math.inf)).min(dim=1).values
        has_better = m.any(dim=1)
        t = better_min - float(boundary)  # type: ignore[arg-type]
        bterm = torch.where(has_better, t - s, torch.full_like(s, _NEG))
        boundary_term = torch.logsumexp(torch.cat([zeros, bterm], dim=1), dim=1)
        metrics["boundary_loss"] = mean_metric(boundary_term)
        per_list = per_list + boundary_term
    active = m.flatten(1).any(1)
    align, list_metrics = _reduce_lists(per_list, active, s)
    metrics.update(list_metrics)
    metrics["align_loss"] = float(align.detach())
    loss = align
    if nll_weight:
        if lp.labels is not None:  # binary: the correct COTs, even in a list without negatives
            best = valid & (psi > 0)
        else:  # ranked: the top group, only where the list ranks anything
            top = psi.masked_fill(~valid, -math.inf).max(1, keepdim=True).values
            best = valid & (psi == top) & active.unsqueeze(1)
        nll_per_list = (torch.where(best, -s, torch.zeros_like(s)).sum(1) / best.sum(1).clamp(min=1))
        has_best = best.any(1)
        nll = nll_per_list[has_best].mean() if has_best.any() else zero_loss(s)
        metrics["nll_loss"] = float(nll.detach())
        loss = loss + nll_weight * nll
    return loss, metrics
