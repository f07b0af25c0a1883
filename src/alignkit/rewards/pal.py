"""PAL: pluralistic reward models with K shared prototypes and per-user mixture weights (spec objectives.md §7.4).

Chen et al. 2024, "PAL: Pluralistic Alignment Framework for Learning from Heterogeneous Preferences"
(arXiv 2406.08469; code RamyaLab/pluralistic-alignment). Both models take fixed-size embeddings from any encoder
(e.g. an LM's last-token hidden state), so they are small `nn.Module`s trained on top of it.

* user weights w_u = softmax(W_u / temperature), W_u ∈ ℝ^K initialised N(0, 1) (zeros for `add_user`).
* PAL-A (ideal point): a_u = Σ_k w_uk p_k; P(A ≻ B | u) = σ(‖f(y_B) − a_u‖ − ‖f(y_A) − a_u‖) (Euclidean).
* PAL-B (prompt-conditioned): a_u(x) = Σ_k w_uk g_k(x); r_u(x, y) = s·cos(f(x, y), a_u(x)), s = exp(θ_s),
  θ_s initialised at log(1/0.07), s clamped ≤ 100. Loss = cross-entropy over [r_u(y_A), r_u(y_B)].
* Regulariser: λ_b·Σ_k max(0, ‖p_k‖ − U), U = 4, λ_b = 1.
* `fit_new_user`: freeze everything but a new user's W_u and fit it on a few labelled pairs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.errors import TrainingError


class _UserWeights(nn.Module):
    def __init__(self, num_users: int, k: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.randn(num_users, k))
        self.temperature = temperature

    def forward(self, user_ids: Tensor) -> Tensor:
        return torch.softmax(self.logits[user_ids] / self.temperature, dim=-1)

    def add_user(self, init: Tensor | None = None) -> int:
        row = torch.zeros(1, self.logits.shape[1]) if init is None else init.reshape(1, -1).float()
        self.logits = nn.Parameter(torch.cat([self.logits.data, row.to(self.logits.device)], dim=0))
        return self.logits.shape[0] - 1


def prototype_bound_penalty(prototypes: Tensor, bound: float = 4.0, coef: float = 1.0) -> Tensor:
    """λ_b · Σ_k max(0, ‖p_k‖ − U) (PAL's `ProtoBoundLossFunction`)."""
    return coef * F.relu(prototypes.norm(dim=-1) - bound).sum()


class PALA(nn.Module):
    """PAL-A ideal-point model: `forward(user_ids, emb_a, emb_b)` returns the logit of P(A ≻ B | u)."""

    def __init__(self, num_users: int, k: int, dim: int, in_dim: int | None = None, temperature: float = 1.0,
                 projector: nn.Module | None = None) -> None:
        super().__init__()
        self.users = _UserWeights(num_users, k, temperature)
        self.prototypes = nn.Parameter(torch.randn(k, dim) / math.sqrt(dim))
        self.projector = projector if projector is not None else (
            nn.Identity() if in_dim in (None, dim) else nn.Linear(in_dim, dim))

    def ideal_point(self, user_ids: Tensor) -> Tensor:
        return self.users(user_ids) @ self.prototypes

    def forward(self, user_ids: Tensor, emb_a: Tensor, emb_b: Tensor) -> Tensor:
        a = self.ideal_point(user_ids)
        return (self.projector(emb_b) - a).norm(dim=-1) - (self.projector(emb_a) - a).norm(dim=-1)

    def loss(self, user_ids: Tensor, emb_a: Tensor, emb_b: Tensor, a_preferred: Tensor,
             bound: float = 4.0, bound_coef: float = 1.0) -> Tensor:
        """−log P(label) + prototype-norm bound. `a_preferred`: 1 if A won, 0 if B won."""
        logit = self(user_ids, emb_a, emb_b)
        ce = F.binary_cross_entropy_with_logits(logit, a_preferred.float())
        return ce + prototype_bound_penalty(self.prototypes, bound, bound_coef)


def pal_b_rewards(user_weights: Tensor, prompt_points: Tensor, item: Tensor, scale: Tensor | float) -> Tensor:
    """r_u(x, y) = s·cos(item, Σ_k w_k g_k(x)). `user_weights` `[B, K]`, `prompt_points` `[B, K, d]`,
    `item` `[B, d]`."""
    ideal = torch.einsum("bk,bkd->bd", user_weights, prompt_points)
    return scale * F.cosine_similarity(item, ideal, dim=-1)


class PALB(nn.Module):
    """PAL-B prompt-conditioned reward: `reward(user_ids, prompt_emb, item_emb)` and `forward(user_ids,
    prompt_emb, emb_a, emb_b) -> [B, 2]` logits for the cross-entropy loss."""

    def __init__(self, num_users: int, k: int, in_dim: int, dim: int, temperature: float = 1.0,
                 max_scale: float = 100.0) -> None:
        super().__init__()
        self.users = _UserWeights(num_users, k, temperature)
        self.prompt_heads = nn.ModuleList(nn.Linear(in_dim, dim, bias=False) for _ in range(k))
        self.item_projector: nn.Module = nn.Linear(in_dim, dim, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.max_scale = max_scale

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)

    def prompt_points(self, prompt_emb: Tensor) -> Tensor:
        return torch.stack([g(prompt_emb) for g in self.prompt_heads], dim=1)

    def reward(self, user_ids: Tensor, prompt_emb: Tensor, item_emb: Tensor) -> Tensor:
        return pal_b_rewards(self.users(user_ids), self.prompt_points(prompt_emb), self.item_projector(item_emb),
                             self.scale)

    def forward(self, user_ids: Tensor, prompt_emb: Tensor, emb_a: Tensor, emb_b: Tensor) -> Tensor:
        return torch.stack([self.reward(user_ids, prompt_emb, emb_a), self.reward(user_ids, prompt_emb, emb_b)],
                           dim=-1)

    def loss(self, user_ids: Tensor, prompt_emb: Tensor, emb_a: Tensor, emb_b: Tensor, preferred: Tensor) -> Tensor:
        """Cross-entropy with the preferred index (0 = A, 1 = B) as target (= BT on r_u)."""
        return pal_loss(self(user_ids, prompt_emb, emb_a, emb_b), preferred)


def pal_loss(logits: Tensor, preferred: Tensor) -> Tensor:
    """CE over the two reward logits `[B, 2]`; `preferred` holds the winning index."""
    return F.cross_entropy(logits.float(), preferred.long())


def fit_new_user(model: PALA | PALB, batch: tuple[Tensor, ...], steps: int = 100, lr: float = 0.1,
                 init: Tensor | None = None) -> int:
    """Few-shot fit for an unseen user: add a row to the user-weight table (zeros = uniform weights unless `init`),
    freeze everything else, and fit that row on `batch` (the model's `loss` arguments without `user_ids`).
    Returns the new user id."""
    if steps < 0:
        raise TrainingError(f"fit_new_user: steps must be ≥ 0, got {steps}")
    uid = model.users.add_user(init)
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    logits = model.users.logits
    logits.requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    n = batch[0].shape[0]
    ids = torch.full((n,), uid, dtype=torch.long)
    try:
        for _ in range(steps):
            opt.zero_grad()
            loss = model.loss(ids, *batch)
            loss.backward()
            assert logits.grad is not None
            keep = torch.zeros_like(logits.grad)
            keep[uid] = 1.0
            logits.grad.mul_(keep)  # only the new user's row moves
            opt.step()
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
        logits.requires_grad_(True)
    return uid
