"""UDM density-ratio helper for BCO (spec §2.2): torch logistic regression, clipping, embeddings."""

from __future__ import annotations

import pytest
import torch

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
