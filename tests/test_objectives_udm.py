"""UDM density-ratio helper for BCO (spec §2.2): torch logistic regression, clipping, embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize

from alignkit.errors import ConfigError
from alignkit.objectives import LogProbs, get_objective
from alignkit.objectives.udm import (
    UDMClassifier,
    density_ratio_from_prob,
    fit_udm_classifier,
    mean_pooled_embeddings,
)


def test_ratio_formula_and_clipping() -> None:
    assert float(density_ratio_from_prob(0.6)) == pytest.approx(1.5, abs=1e-6)
    assert float(density_ratio_from_prob(0.1)) == 0.5
    assert float(density_ratio_from_prob(0.99)) == 10.0


def test_fit_separates_prompt_distributions_and_round_trips() -> None:
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(64, 4, generator=g) + torch.tensor([2.0, 0, 0, 0])
    neg = torch.randn(32, 4, generator=g) - torch.tensor([2.0, 0, 0, 0])
    clf = fit_udm_classifier(pos, neg)
    assert float(clf.prob_desirable(pos).mean()) > 0.8 and float(clf.prob_desirable(neg).mean()) < 0.2
    w = clf.density_ratio(torch.cat([pos, neg]))
    assert float(w.min()) >= 0.5 and float(w.max()) <= 10.0
    # an undesirable prompt that looks desirable is up-weighted
    assert float(clf.density_ratio(torch.tensor([[3.0, 0, 0, 0]]))) > 1.0
    again = UDMClassifier.from_state_dict(clf.state_dict())
    assert torch.equal(again.density_ratio(neg), clf.density_ratio(neg))


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        fit_udm_classifier(torch.zeros(0, 3), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="same D"):
        fit_udm_classifier(torch.zeros(2, 3), torch.zeros(2, 4))


def test_udm_weights_only_touch_undesirable_rows() -> None:
    lp = LogProbs(policy=torch.tensor([[0.5], [-0.3]]), lengths=torch.ones(2, 1), reference=torch.zeros(2, 1),
                  labels=torch.tensor([[True], [False]]), extras={"udm_weight": torch.tensor([7.0, 1.0])})
    base = float(get_objective("bco")(lp)[0])
    lp.extras["udm_weight"] = torch.tensor([1.0, 1.0])
    assert float(get_objective("bco")(lp)[0]) == pytest.approx(base)
    assert float(get_objective("bco")(lp, use_udm=False)[0]) == pytest.approx(base)


def test_mean_pooled_embeddings_with_tiny_model() -> None:
    from alignkit.models import load_model

    model, tok = load_model("tiny-random")
    emb = mean_pooled_embeddings(model, tok, ["Hello there", "A much longer prompt about the weather today"],
                                 batch_size=2)
    assert emb.shape[0] == 2 and torch.isfinite(emb).all()
    for i, text in enumerate(["Hello there", "A much longer prompt about the weather today"]):
        single = mean_pooled_embeddings(model, tok, [text])
        assert torch.allclose(single[0], emb[i], atol=1e-4)  # padding does not leak into the mean


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_fit_uses_raw_features_like_trl() -> None:
    # One desirable prompt at x = +3, one undesirable at x = −3 (balanced weights 1, bias 0 by symmetry).
    # scikit-learn's objective ½w² + 2·log(1 + e^{−3w}) is stationary where w = 6·σ(−3w).
    w_raw = brentq(lambda w: w - 6 * _sigmoid(-3 * w), 0.0, 6.0)
    clf = fit_udm_classifier(torch.tensor([[3.0]]), torch.tensor([[-3.0]]))
    assert float(clf.prob_desirable(torch.tensor([[3.0]]))) == pytest.approx(_sigmoid(3 * w_raw), abs=1e-4)
    # standardising first (x/3) fits w' = 2·σ(−w'), a different classifier: p(+3) = σ(w')
    w_std = brentq(lambda w: w - 2 * _sigmoid(-w), 0.0, 2.0)
    std = fit_udm_classifier(torch.tensor([[3.0]]), torch.tensor([[-3.0]]), standardize=True)
    assert float(std.prob_desirable(torch.tensor([[3.0]]))) == pytest.approx(_sigmoid(w_std), abs=1e-4)
    assert abs(_sigmoid(3 * w_raw) - _sigmoid(w_std)) > 0.1


def test_fit_matches_scipy_on_the_scikit_learn_objective() -> None:
    # Unbalanced classes, features on different scales, a non-zero bias: minimise the same objective with scipy.
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(12, 3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 0.2, 1.0]) + 1.0
    neg = torch.randn(5, 3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 0.2, 1.0])
    x = torch.cat([pos, neg]).numpy()
    y = np.r_[np.ones(12), np.zeros(5)]
    cw = np.where(y > 0, 17 / 24, 17 / 10)

    def objective(theta: np.ndarray) -> float:
        z = x @ theta[:3] + theta[3]
        bce = np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y)
        return 0.5 * theta[:3] @ theta[:3] + float((cw * bce).sum())

    theta = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    clf = fit_udm_classifier(pos.float(), neg.float())
    expected = 1 / (1 + np.exp(-(x @ theta[:3] + theta[3])))
    assert clf.prob_desirable(torch.from_numpy(x)).numpy() == pytest.approx(expected, abs=1e-4)
