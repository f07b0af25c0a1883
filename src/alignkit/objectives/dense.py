"""Dense DPO on corrections (RLHF-V DDPO): DPO whose sequence scores weight the corrected tokens.

Spec: ../shared/spec/wave2_feedback_safety.md §1 (Yu et al., *RLHF-V: Towards Trustworthy MLLMs via Behavior
Alignment from Fine-grained Correctional Human Feedback*, CVPR 2024, arXiv 2312.00849; code `thunlp/Muffin`).

Rows are pairwise `[chosen = corrected, rejected = original]`. Inputs, all `[B, 2, T]` over completion tokens:
  `lp.token_policy`, `lp.token_reference`  per-token log-probs ℓ_t under π_θ and π_ref;
  `lp.token_mask`                          True on completion tokens;
  `lp.extras["token_weights"]`             w_t = γ on changed tokens, 1 elsewhere (the *same* weights for π_θ
                                           and π_ref); `train/dense.py` computes the changed sets from the
                                           record's spans or the token-diff rule (`alignkit.data.token_diff`).
Token weights are given as "changed" indicators scaled by γ at loss time, so γ stays an objective
hyperparameter: `extras["token_weights"]` holds 1 on changed tokens and 0 elsewhere, and w = 1 + (γ − 1)·c.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import add_sft, f32, need, need_extra, neg_logsigmoid, pair_metrics
from alignkit.objectives.base import LogProbs, Metrics, register_objective

# The three hyperparameter sets of spec §1.4: (γ, β, normalise).
DDPO_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"gamma": 5.0, "beta": 0.5, "normalize": True},  # paper §4.1, Eq. 5 (alignkit's default)
    "muffin_defaults": {"gamma": 3.0, "beta": 0.5, "normalize": False},  # train_muffin.py dataclass defaults
    "rlhfv_release": {"gamma": 1.1, "beta": 0.1, "normalize": False},  # README / run_RLHFV.sh command
}


def weighted_sequence_logps(tok_logps: Tensor, mask: Tensor, weights: Tensor, normalize: bool) -> Tensor:
    """S^w(y) = Σ_t w_t ℓ_t over masked tokens, or A^w(y) = S^w / Σ_t w_t when `normalize` (spec §0, Eq. 5).

    Shapes `[..., T]` → `[...]`; prompt/pad positions (mask False) get weight 0 whatever `weights` says."""
    w = f32(weights) * mask.to(f32(weights).dtype)
    total = (w * f32(tok_logps)).sum(-1)
    return total / w.sum(-1).clamp(min=1e-8) if normalize else total


def ddpo_loss(pol_w: Tensor, pol_l: Tensor, ref_w: Tensor, ref_l: Tensor, mask_w: Tensor, mask_l: Tensor,
              weight_w: Tensor, weight_l: Tensor, beta: float, normalize: bool = True
              ) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DDPO losses and implicit rewards (spec §1.2): all inputs `[B, T]` per-token tensors.

    h = [Ŝ_θ(y_w) − Ŝ_θ(y_l)] − [Ŝ_ref(y_w) − Ŝ_ref(y_l)],  L = −log σ(β h).
    Returns (losses `[B]`, β·(Ŝ_θ − Ŝ_ref)(y_w), β·(Ŝ_θ − Ŝ_ref)(y_l)).
    """
    sw = weighted_sequence_logps(pol_w, mask_w, weight_w, normalize)
    sl = weighted_sequence_logps(pol_l, mask_l, weight_l, normalize)
    rw = weighted_sequence_logps(ref_w, mask_w, weight_w, normalize).detach()
    rl = weighted_sequence_logps(ref_l, mask_l, weight_l, normalize).detach()
    h = (sw - sl) - (rw - rl)
    return neg_logsigmoid(beta * h), beta * (sw - rw), beta * (sl - rl)


def resolve_ddpo_hparams(preset: str, gamma: float | None, beta: float | None,
                         normalize: bool | None) -> tuple[float, float, bool]:
    """The preset's (γ, β, normalise), each overridden by an explicitly given value."""
    if preset not in DDPO_PRESETS:
        raise ConfigError(f"objective 'ddpo': preset must be one of {sorted(DDPO_PRESETS)}, got {preset!r}")
    p = DDPO_PRESETS[preset]
    g = float(p["gamma"] if gamma is None else gamma)
    b = float(p["beta"] if beta is None else beta)
    n = bool(p["normalize"] if normalize is None else normalize)
    if g <= 0:
        raise ConfigError(f"objective 'ddpo': gamma must be > 0, got {g}")
    return g, b, n


@register_objective(
    "ddpo", data_kind="pairwise", needs_reference=True, token_level=True, needs_extras=("token_weights",),
    paper="Yu et al. 2024, RLHF-V: Towards Trustworthy MLLMs via Behavior Alignment from Fine-grained "
          "Correctional Human Feedback (DDPO)",
    preset="paper", gamma=None, beta=None, normalize=None, sft_weight=0.0,
    diff_mode="auto", min_match_size=3, autojunk=True, weight_pure_insertions=False, max_changed_fraction=0.5)
def ddpo(lp: LogProbs, *, preset: str, gamma: float | None, beta: float | None, normalize: bool | None,
         sft_weight: float, diff_mode: str, min_match_size: int, autojunk: bool, weight_pure_insertions: bool,
         max_changed_fraction: float) -> tuple[Tensor, Metrics]:
    """DDPO (spec §1.2): DPO on weighted sequence scores, w_t = γ on corrected tokens, 1 elsewhere.

    Ŝ(y) = [Σ_{t∉C} ℓ_t + γ Σ_{t∈C} ℓ_t] / (|y_u| + γ|y_c|)   (`normalize=True`, paper Eq. 5), or the weighted
    sum (`normalize=False`, the released command); h = ΔŜ_θ − ΔŜ_ref; L = −log σ(β h) (+ `sft_weight`·NLL(y_w)).
    Presets (spec §1.4): `paper` γ = 5, β = 0.5, normalised (default); `muffin_defaults` γ = 3, β = 0.5, summed;
    `rlhfv_release` γ = 1.1, β = 0.1, summed. An explicit `gamma`/`beta`/`normalize` overrides the preset.
    γ = 1 summed is plain DPO; γ = 1 normalised is DPO on mean log-probs.
    The data arguments (`diff_mode` auto | spans | token_diff, `min_match_size`, `autojunk`,
    `weight_pure_insertions`, `max_changed_fraction`: pairs whose diff changes more than this fraction of tokens
    are not corrections and get weight 1 everywhere, i.e. plain DPO, spec §1.7 [uncertain threshold]) are read by
    the step that builds `extras["token_weights"]` (`alignkit.train.dense`); the loss ignores them.
    Worked (spec §1.5): paper → 0.583271; release → 0.629791; γ = 1 summed → 0.634946.
    """
    del diff_mode, min_match_size, autojunk, weight_pure_insertions, max_changed_fraction
    g, b, norm = resolve_ddpo_hparams(preset, gamma, beta, normalize)
    pol = f32(need(lp.token_policy, "token_policy", "ddpo"))
    ref = f32(need(lp.token_reference, "token_reference (per-token reference log-probs)", "ddpo"))
    mask = need(lp.token_mask, "token_mask", "ddpo").bool()
    changed = f32(need_extra(lp, "token_weights", "ddpo"))
    if pol.dim() != 3 or pol.shape[1] != 2 or not (pol.shape == ref.shape == mask.shape == changed.shape):
        raise ConfigError(f"objective 'ddpo': token_policy {tuple(pol.shape)}, token_reference {tuple(ref.shape)}, "
                          f"token_mask {tuple(mask.shape)} and extras['token_weights'] {tuple(changed.shape)} must "
                          "all be [B, 2, T] (pairwise rows)")
    w = 1.0 + (g - 1.0) * changed
    losses, chosen, rejected = ddpo_loss(pol[:, 0], pol[:, 1], ref[:, 0], ref[:, 1], mask[:, 0], mask[:, 1],
                                         w[:, 0], w[:, 1], b, norm)
    metrics = pair_metrics(chosen, rejected, lp)
    m = mask.to(changed.dtype)
    metrics["changed_fraction"] = float(((changed * m).sum() / m.sum().clamp(min=1)).detach())
    return add_sft(losses.mean(), lp, sft_weight, metrics), metrics


__all__ = ["DDPO_PRESETS", "ddpo", "ddpo_loss", "resolve_ddpo_hparams", "weighted_sequence_logps"]
