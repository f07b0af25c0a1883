"""SFT-data objectives: plain NLL and PoFT (spec §4.2). Rows hold one item: `[B, 1]` tensors."""

from __future__ import annotations

from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives._common import averaged, check_shape, f32, need_extra, neg_logsigmoid
from alignkit.objectives.base import LogProbs, Metrics, mean_metric, register_objective


@register_objective("sft", data_kind="sft", needs_reference=False,
                    paper="supervised fine-tuning (token-level maximum likelihood)", per_sequence=False)
def sft(lp: LogProbs, *, per_sequence: bool) -> tuple[Tensor, Metrics]:
    """Negative log-likelihood of the completion, mean per token.

    Default (`per_sequence=False`): L = −Σ_b S_θ(y_b) / Σ_b |y_b| (every completion token weighs the same, like
    HF/TRL cross-entropy). `per_sequence=True`: L = mean_b[−S_θ(y_b)/|y_b|] (every example weighs the same).
    Uses `lp.policy`/`lp.lengths` with K = 1 (any K is accepted; all items are targets).
    """
    check_shape(lp, "sft")
    pol, lens = f32(lp.policy), f32(lp.lengths)
    loss = (-averaged(lp)).mean() if per_sequence else -pol.sum() / lens.sum().clamp(min=1)
    return loss, {"nll_loss": float(loss.detach()), "tokens": float(lens.sum())}


@register_objective("poft", data_kind="sft", needs_reference=False, needs_extras=("aligned_avg_logp",),
                    paper="Fan et al. 2024, Preference-Oriented Supervised Fine-Tuning (PoFT), arXiv 2412.12865",
                    beta=1.0, gamma=0.0)
def poft(lp: LogProbs, *, beta: float, gamma: float) -> tuple[Tensor, Metrics]:
    """PoFT (spec §4.2): L = −log σ(β·r_θ − β·r̄_A + γ), r_θ = A_θ(y) (mean token log-prob of the target model),
    r̄_A = mean over M aligned LLMs of their own length-normalised log-probs of y (precomputed; detached).

    Needs `lp.extras["aligned_avg_logp"]`, shape `[B]` (or `[B, 1]`). Defaults β = 1, γ = 0 (hard-coded in the
    official code). Worked: r_θ = −1.2, r_j = [−1.0, −1.5, −1.4] → 0.6443967.
    """
    check_shape(lp, "poft", k=1)
    r_theta = averaged(lp)[:, 0]
    r_aligned = f32(need_extra(lp, "aligned_avg_logp", "poft")).detach().reshape(-1)
    if r_aligned.numel() != r_theta.numel():
        raise ConfigError(f"objective 'poft': extras['aligned_avg_logp'] has {r_aligned.numel()} values for a batch "
                         f"of {r_theta.numel()}")
    z = beta * (r_theta - r_aligned) + gamma
    loss = neg_logsigmoid(z).mean()
    return loss, {"rewards/policy": mean_metric(r_theta), "rewards/aligned": mean_metric(r_aligned),
                  "rewards/margin": mean_metric(r_theta - r_aligned)}
