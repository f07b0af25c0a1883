"""Reward-model losses vs the spec's worked numbers (objectives.md §7.1–§7.4)."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.rewards.losses import (
    bt_loss,
    helpsteer2_scalar,
    listwise_bt_loss,
    min_norm_weights,
    more_loss,
    more_task_weights,
    regression_loss,
    two_task_min_norm,
)
from alignkit.rewards.pal import PALA, PALB, fit_new_user, pal_b_rewards, pal_loss, prototype_bound_penalty


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


def test_bt_margin_and_centering() -> None:
    assert bt_loss(t(1.0), t(0.2), margin=0.5).item() == pytest.approx(0.5543552, abs=1e-6)
    assert bt_loss(t(1.0), t(0.2)).item() == pytest.approx(0.3711007, abs=1e-6)
    centred = bt_loss(t(1.0), t(0.2), margin=t(0.5), center_coef=0.01).item()
    assert centred == pytest.approx(0.5543552 + 0.0144, abs=1e-6)


def test_listwise_bt_averages_valid_pairs_and_skips_ties() -> None:
    r = torch.tensor([[2.0, 1.0, 0.0]])
    labels = torch.tensor([[3.0, 1.0, 1.0]])  # items 2 and 3 tie: pairs (1,2), (1,3) only
    want = (-torch.nn.functional.logsigmoid(t(1.0)) - torch.nn.functional.logsigmoid(t(2.0))).item() / 2
    assert listwise_bt_loss(r, labels).item() == pytest.approx(want, abs=1e-6)
    mask = torch.tensor([[1, 1, 0]])
    assert listwise_bt_loss(r, labels, mask).item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))), abs=1e-6)


def test_regression_masked_mse_and_helpsteer2_scalar() -> None:
    pred = torch.tensor([[3.2, 3.0, 3.9, 1.8, 2.1]])
    labels = torch.tensor([[3.0, 3.0, 4.0, 2.0, -100.0]])
    assert regression_loss(pred, labels).item() == pytest.approx(0.0225, abs=1e-6)
    assert helpsteer2_scalar(pred).item() == pytest.approx(6.385, abs=1e-5)


def test_more_loss_and_min_norm() -> None:
    loss = more_loss(t(1.0, 0.0), t(0.0, 0.5), torch.tensor([0, 1]), t(0.5, 0.5))
    assert loss.item() == pytest.approx(0.6436693, abs=1e-6)
    # Orthogonal unit gradients -> uniform λ; the two-task closed form; three orthonormal tasks -> 1/3 each.
    assert min_norm_weights(torch.eye(2)).tolist() == pytest.approx([0.5, 0.5])
    g1, g2 = t(1.0, 0.0), t(0.6, 0.8)
    lam1 = ((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1).item()
    assert two_task_min_norm(g1, g2).tolist() == pytest.approx([lam1, 1 - lam1])
    assert min_norm_weights(torch.eye(3)).tolist() == pytest.approx([1 / 3] * 3, abs=1e-4)
    # Frank–Wolfe with three tasks reaches the brute-force minimum over the simplex.
    g = torch.tensor([[1.0, 0.2], [0.1, 1.0], [0.7, 0.7]])
    lam = min_norm_weights(g)
    best = min(((a / 20) * g[0] + (b / 20) * g[1] + ((20 - a - b) / 20) * g[2]).norm().item()
               for a in range(21) for b in range(21 - a))
    assert (lam @ g).norm().item() <= best + 1e-3 and lam.sum().item() == pytest.approx(1.0)


def test_more_task_weights_momentum_and_normalisation() -> None:
    grads = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    lam, state = more_task_weights(grads)
    assert lam.tolist() == pytest.approx([0.5, 0.5])  # L2 normalisation removes the scale difference
    lam2, state2 = more_task_weights(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), state, alpha=0.99)
    assert torch.allclose(state2, torch.tensor([[0.02, 0.99], [0.0, 1.04]]))  # (1-α)·old + α·new


def test_pal_b_worked_example() -> None:
    w = torch.softmax(torch.tensor([[0.0, math.log(3)]]), dim=-1)
    points = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    ra = pal_b_rewards(w, points, torch.tensor([[1.0, 0.5]]), 1 / 0.07)
    rb = pal_b_rewards(w, points, torch.tensor([[0.5, 1.0]]), 1 / 0.07)
    assert (ra * 0.07).item() == pytest.approx(0.7071068, abs=1e-6)
    assert (rb * 0.07).item() == pytest.approx(0.9899495, abs=1e-6)
    loss = pal_loss(torch.stack([ra, rb], dim=-1), torch.tensor([1]))
    assert loss.item() == pytest.approx(0.0174339, abs=1e-6)


def test_pal_b_module_reproduces_the_example() -> None:
    m = PALB(num_users=1, k=2, in_dim=2, dim=2)
    with torch.no_grad():
        m.users.logits.copy_(torch.tensor([[0.0, math.log(3)]]))
        m.prompt_heads[0].weight.copy_(torch.eye(2))                       # g1([1,0]) = [1, 0]
        m.prompt_heads[1].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))  # g2([1,0]) = [0, 1]
        m.item_projector.weight.copy_(torch.eye(2))
    assert m.scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    loss = m.loss(torch.tensor([0]), t(1.0, 0.0)[None], t(1.0, 0.5)[None], t(0.5, 1.0)[None], torch.tensor([1]))
    assert loss.item() == pytest.approx(0.0174339, abs=1e-5)


def test_pal_a_ideal_point_and_bound() -> None:
    m = PALA(num_users=1, k=2, dim=2)
    with torch.no_grad():
        m.users.logits.copy_(torch.tensor([[0.0, 0.0]]))
        m.prototypes.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    assert m.ideal_point(torch.tensor([0])).tolist() == [[1.0, 0.0]]
    logit = m(torch.tensor([0]), t(1.0, 0.0)[None], t(3.0, 0.0)[None])  # A is at the ideal point
    assert logit.item() == pytest.approx(2.0)
    assert prototype_bound_penalty(torch.tensor([[5.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(1.0)


def test_fit_new_user_moves_only_the_new_row() -> None:
    torch.manual_seed(0)
    m = PALA(num_users=2, k=2, dim=2)
    with torch.no_grad():
        m.prototypes.copy_(torch.tensor([[0.0, 0.0], [3.0, 0.0]]))
    before = m.users.logits.detach().clone()
    protos = m.prototypes.detach().clone()
    # The new user prefers items near prototype 2.
    a = torch.tensor([[3.0, 0.0], [2.8, 0.1]])
    b = torch.tensor([[0.0, 0.0], [0.2, 0.0]])
    uid = fit_new_user(m, (a, b, torch.ones(2)), steps=50, lr=0.2)
    assert uid == 2
    assert torch.equal(m.users.logits[:2].detach(), before) and torch.equal(m.prototypes.detach(), protos)
    w = m.users(torch.tensor([uid]))[0]
    assert w[1] > 0.7
