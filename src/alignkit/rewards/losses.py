"""Pure reward-model loss functions (torch, fp32), for the RM training engine. Formulas: spec objectives.md §7.

* `bt_loss`: Bradley–Terry (InstructGPT), with Llama 2's margin and Eisenstein et al.'s centering (TRL's
  `center_rewards_coefficient`): L = −log σ(r_w − r_l − m) + c·(r_w + r_l)².
* `listwise_bt_loss`: BT over every ordered pair of a ranked group with different labels, divided by the number of
  valid pairs (MORE's `ranking_loss`).
* `regression_loss`: HelpSteer2/NeMo masked MSE, Σ m(ŷ − y)² / Σ m, missing labels = −100.
* `helpsteer2_scalar`: r = 0.65·help + 0.8·correct + 0.45·coherence + 0.55·complexity − 0.4·verbosity.
* MORE (Zeng et al. 2023, arXiv 2312.07401): `min_norm_weights` (MGDA min-norm λ by Frank–Wolfe with exact line
  search), `more_task_weights` (momentum α on reward-head gradients, L2 normalisation, min-norm λ), `more_loss`
  (T · Σ_k λ_k Σ_{pairs∈k} −log σ(r_w − r_l) / total pairs; uniform λ = 1/T gives the plain mean).
* `remodetect_loss`: ReMoDetect's triplet preference loss with the replay term (testtime_eval.md §B6).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.errors import TrainingError

# Llama 2 margin schemes (Touvron et al. 2023): rating -> margin m.
LLAMA2_MARGINS: dict[str, dict[str, float]] = {
    "small": {"significantly better": 1.0, "better": 2 / 3, "slightly better": 1 / 3, "negligibly better": 0.0,
              "unsure": 0.0},
    "large": {"significantly better": 3.0, "better": 2.0, "slightly better": 1.0, "negligibly better": 0.0,
              "unsure": 0.0},
}
HELPSTEER2_WEIGHTS = (0.65, 0.8, 0.45, 0.55, -0.4)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


def bt_loss(chosen: Tensor, rejected: Tensor, margin: Tensor | float | None = None, center_coef: float = 0.0,
            reduction: str = "mean") -> Tensor:
    """Bradley–Terry RM loss −log σ(r_w − r_l − m) + c·(r_w + r_l)² (spec §7.1; m = 0 plain BT, c ≈ 0.01)."""
    chosen, rejected = chosen.float(), rejected.float()
    z = chosen - rejected
    if margin is not None:
        z = z - (margin.float() if isinstance(margin, Tensor) else float(margin))
    losses = -F.logsigmoid(z)
    if center_coef:
        losses = losses + center_coef * (chosen + rejected) ** 2
    return _reduce(losses, reduction)


def listwise_bt_loss(rewards: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """BT over all ordered pairs (i, j) in each group with labels[i] > labels[j], averaged over valid pairs.
    `rewards`, `labels`: `[B, K]`; `mask` marks real (non-padded) items. Ties are excluded."""
    rewards, labels = rewards.float(), labels.float()
    valid = labels.unsqueeze(2) > labels.unsqueeze(1)  # [B, K, K]: i preferred over j
    if mask is not None:
        m = mask.bool()
        valid = valid & m.unsqueeze(2) & m.unsqueeze(1)
    diff = rewards.unsqueeze(2) - rewards.unsqueeze(1)
    n = valid.sum()
    if n == 0:
        return rewards.sum() * 0.0
    return (-F.logsigmoid(diff) * valid).sum() / n


def regression_loss(pred: Tensor, labels: Tensor, ignore_value: float = -100.0,
                    weights: Sequence[float] | Tensor | None = None) -> Tensor:
    """Masked MSE Σ m(ŷ − y)² / Σ m over `[B, K]` attributes (spec §7.2); labels equal to `ignore_value` are
    masked. Optional per-attribute `weights` multiply each squared error (and its mask count)."""
    pred, labels = pred.float(), labels.float()
    mask = (labels != ignore_value).float()
    if weights is not None:
        w = torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
        mask = mask * w
    denom = mask.sum()
    if denom == 0:
        return pred.sum() * 0.0
    return ((pred - torch.where(mask > 0, labels, pred.detach())) ** 2 * mask).sum() / denom


def helpsteer2_scalar(pred: Tensor, weights: Sequence[float] = HELPSTEER2_WEIGHTS) -> Tensor:
    """HelpSteer2's scalar reward from its 5 attributes (model card weights)."""
    w = torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    return pred @ w


def two_task_min_norm(g1: Tensor, g2: Tensor) -> Tensor:
    """Closed form for two tasks: λ₁ = clip((g₂ − g₁)·g₂ / ‖g₁ − g₂‖², 0, 1)."""
    d = g1 - g2
    denom = d.dot(d)
    lam1 = torch.tensor(0.5, dtype=g1.dtype) if denom <= 1e-12 else ((g2 - g1).dot(g2) / denom).clamp(0, 1)
    return torch.stack([lam1, 1 - lam1])


def min_norm_weights(grads: Tensor, max_iter: int = 250, tol: float = 1e-6) -> Tensor:
    """MGDA min-norm point λ* = argmin_{λ ∈ simplex} ‖Σ_k λ_k g_k‖² by Frank–Wolfe with exact line search
    (Sener & Koltun 2018's `find_min_norm_element_FW`, MORE's solver). `grads`: `[T, D]`."""
    g = grads.detach().double()
    t = g.shape[0]
    if t == 1:
        return torch.ones(1, dtype=grads.dtype)
    if t == 2:
        return two_task_min_norm(g[0], g[1]).to(grads.dtype)
    gram = g @ g.T
    lam = torch.full((t,), 1.0 / t, dtype=torch.float64)
    for _ in range(max_iter):
        gl = gram @ lam
        k = int(torch.argmin(gl))
        vv, vg, gg = lam @ gl, gl[k], gram[k, k]
        denom = vv - 2 * vg + gg
        if denom <= 1e-12:
            break
        gamma = float(((vv - vg) / denom).clamp(0, 1))
        step = gamma * (torch.eye(t, dtype=torch.float64)[k] - lam)
        lam = lam + step
        if step.abs().sum() < tol:
            break
    return lam.to(grads.dtype)


def more_task_weights(head_grads: Tensor, state: Tensor | None = None, alpha: float = 0.99,
                      normalize: str = "l2") -> tuple[Tensor, Tensor]:
    """MORE's per-step task weights (spec §7.3). `head_grads`: `[T, D]` gradients of each task's loss w.r.t. the
    reward head only. Momentum g ← (1 − α)·g + α·g_new (α = 0.99 weights the *new* gradient), normalise each row
    (`l2` or `none`), solve min-norm. Returns (λ `[T]`, new momentum state); λ carries no gradient."""
    g_new = head_grads.detach().float()
    g = g_new if state is None else (1 - alpha) * state + alpha * g_new
    if normalize == "l2":
        gn = g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)
    elif normalize == "none":
        gn = g
    else:
        raise ValueError(f"normalize must be 'l2' or 'none', got {normalize!r}")
    return min_norm_weights(gn), g


def more_loss(chosen: Tensor, rejected: Tensor, task_ids: Tensor, lambdas: Tensor) -> Tensor:
    """T · Σ_k λ_k · Σ_{pairs ∈ task k} −log σ(r_w − r_l) / (number of pairs) (spec §7.3)."""
    num_tasks = lambdas.shape[0]
    if task_ids.numel() and (int(task_ids.max()) >= num_tasks or int(task_ids.min()) < 0):
        raise TrainingError(f"more_loss: task ids must be in [0, {num_tasks}); got {task_ids.tolist()}")
    per_pair = -F.logsigmoid(chosen.float() - rejected.float())
    w = lambdas.detach().float().to(per_pair.device)[task_ids]
    return num_tasks * (w * per_pair).sum() / max(per_pair.numel(), 1)


REMODETECT_LAMBDAS: tuple[float, float, float] = (0.35, 1.0, 0.35)  # (llm≻mixed), (llm≻human), (mixed≻human)


def remodetect_loss(r_llm: Tensor, r_mixed: Tensor, r_human: Tensor, *,
                    lambdas: Sequence[float] = REMODETECT_LAMBDAS, beta: float = 0.01, replay: Tensor | None = None,
                    replay_orig: Tensor | None = None, l2_ratio: float = 0.01) -> tuple[Tensor, dict[str, float]]:
    """ReMoDetect's triplet loss on `[B]` rewards (+ optional replay term); returns (loss, parts).

    testtime_eval.md §B6 / wave2_selfalign_merge.md §9 (Lee et al., NeurIPS 2024; `scripts/train.py`): the mean
    over the pairs (llm ≻ mixed), (llm ≻ human), (mixed ≻ human) of λ_ab · mean[−log σ(r_a − r_b) + β·½(r_a² +
    r_b²)], plus l2_ratio · Σ (r_θ − r_orig)² over the replay batch (a sum, not a mean, as the code)."""
    pairs = ((r_llm, r_mixed), (r_llm, r_human), (r_mixed, r_human))
    terms = [lam * (-F.logsigmoid(a - b) + beta * 0.5 * (a ** 2 + b ** 2)).mean()
             for lam, (a, b) in zip(lambdas, pairs, strict=True)]
    loss = torch.stack(terms).mean()
    parts = {f"pair{i}": float(t.detach()) for i, t in enumerate(terms)}
    if replay is not None:
        if replay_orig is None:
            raise TrainingError("the replay term needs the frozen original model's rewards (replay_orig)")
        reg = l2_ratio * ((replay - replay_orig.detach()) ** 2).sum()
        parts["replay"] = float(reg.detach())
        loss = loss + reg
    return loss, parts
