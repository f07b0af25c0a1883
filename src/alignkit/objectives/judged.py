"""Judgment-based token-level objective CUT (spec §4.1). Rows hold one completion: `[B, 1, T]` token tensors.

Inputs (all over the *response* tokens, which must tokenise identically in both contexts):
  `lp.token_policy`                  `[B, 1, T]` log π_θ(y_t | x, j, y_<t): the context *with* the judgment;
  `lp.extras["token_policy_plain"]`  `[B, 1, T]` log π_θ(y_t | x, y_<t): the context *without* it;
  `lp.token_mask`                    `[B, 1, T]` bool, True on response tokens;
  `lp.labels`                        `[B, 1]` bool, True = positive judgment (Align-P, e.g. score ≥ 7).
Both token tensors are differentiable (two forwards of the same policy).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import f32, need, need_extra
from alignkit.objectives.base import LogProbs, Metrics, register_objective


@register_objective("cut", data_kind="judged", needs_reference=False, token_level=True,
                    needs_extras=("token_policy_plain",),
                    paper="Xu et al. 2023, Reasons to Reject? Aligning Language Models with Judgments (CUT)",
                    threshold=1.1, unlike_weight=1.0, combine="mean")
def cut(lp: LogProbs, *, threshold: float, unlike_weight: float, combine: str) -> tuple[Tensor, Metrics]:
    """CUT, contrastive unlikelihood training (spec §4.1).

    Negative judgment: flag U = {t : sg(p⁺_t / p_t) > λ} (p⁺ with judgment, p without);
      L_N  = −mean_t log p⁺_t (MLE in the judgment context, Align-N);
      L_UL = −mean_t [1[t∉U]·log p_t + 1[t∈U]·α·log(1 − p_t)] (Misalign, plain context; log1p with p ≤ 1 − 1e-6);
      L = (L_N + L_UL)/2 (`combine="mean"`, the official code) or L_N + L_UL (`combine="sum"`, the paper).
    Positive judgment: L = −mean_t log p_t (plain SFT, judgment-free context).
    Batch loss = mean over examples. Defaults λ = `threshold` = 1.1, α = `unlike_weight` = 1.0 (README, online;
    offline: 1.2 / 0.5; the code's own α default is 0.1).
    Worked: p⁺ = [.5, .2, .9], p = [.4, .2, .6] → 0.9074166 (mean) / 1.8148333 (sum).
    """
    if combine not in ("mean", "sum"):
        raise ConfigError(f"objective 'cut': combine must be 'mean' or 'sum', got {combine!r}")
    judged = f32(need(lp.token_policy, "token_policy (log-probs with the judgment in context)", "cut"))
    plain = f32(need_extra(lp, "token_policy_plain", "cut"))
    mask = need(lp.token_mask, "token_mask", "cut").bool()
    labels = need(lp.labels, "labels (True = positive judgment)", "cut").reshape(-1).bool()
    if judged.shape != plain.shape or judged.shape != mask.shape:
        raise ConfigError(f"objective 'cut': token_policy {tuple(judged.shape)}, extras['token_policy_plain'] "
                          f"{tuple(plain.shape)} and token_mask {tuple(mask.shape)} must have the same shape; "
                          "the response must tokenise identically in both contexts")
    b = judged.shape[0]
    judged, plain, mask = judged.reshape(b, -1), plain.reshape(b, -1), mask.reshape(b, -1)
    zeros = torch.zeros_like(plain)
    judged, plain = torch.where(mask, judged, zeros), torch.where(mask, plain, zeros)
    n_tok = mask.sum(1).clamp(min=1)

    def masked_mean(x: Tensor) -> Tensor:
        return torch.where(mask, x, zeros).sum(1) / n_tok

    with torch.no_grad():
        flagged = mask & ((judged - plain) > math.log(threshold))
    p_plain = plain.exp().clamp(max=1 - 1e-6)
    unlike = torch.where(flagged, unlike_weight * torch.log1p(-p_plain), plain)
    l_ul = -masked_mean(unlike)
    l_n = -masked_mean(judged)
    neg_loss = 0.5 * (l_n + l_ul) if combine == "mean" else l_n + l_ul
    pos_loss = -masked_mean(plain)
    losses = torch.where(labels, pos_loss, neg_loss)
    n_neg = (~labels).sum()
    return losses.mean(), {
        "count/positive": float(labels.sum()), "count/negative": float(n_neg),
        "flagged_fraction": float(flagged[~labels].sum() / mask[~labels].sum().clamp(min=1)),
        "unlikelihood_loss": float(l_ul.detach()[~labels].mean()) if n_neg else 0.0,
    }
