"""Token-distribution shift (spec A5.2): categories from ranks, and ranks computed from two HF models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignkit.errors import DataError
from alignkit.evaluate.tds import (
    BASE_TEMPLATE,
    TokenShiftData,
    position_curves,
    tds_category,
    tds_fractions,
    token_ranks_from_models,
    top_shifted_tokens,
)


def test_categories_follow_the_paper() -> None:
    assert tds_category(np.array([1, 2, 3, 4, 30])).tolist() == [0, 1, 1, 2, 2]


def test_fractions_pooled_over_tokens() -> None:
    # 10 tokens: unshifted 5, marginal 3 (ranks 2,3,2), shifted 2 (4, 50)
    r = tds_fractions([[1, 1, 2, 4, 1], [3, 1, 2, 50, 1]])
    assert (r.unshifted.value, r.marginal.value, r.shifted.value) == pytest.approx((0.5, 0.3, 0.2))
    assert (r.n_tokens, r.n_answers) == (10, 2)
    for e in (r.unshifted, r.marginal, r.shifted):
        assert e.low <= e.value <= e.high
    with pytest.raises(DataError, match="integers >= 1"):
        tds_fractions([[0, 1]])
    with pytest.raises(DataError, match="no token ranks"):
        tds_fractions([[]])


def test_curves_and_top_shifted_tokens() -> None:
    d = TokenShiftData(ranks=[np.array([5, 1, 2]), np.array([7, 1])], base_probs=[np.array([.1, .9, .3]),
                       np.array([.05, .8])], tokens=[["Hi", "the", "a"], ["Hi", "x"]])
    c = position_curves(d)
    assert c["mean_rank"].tolist() == [6.0, 1.0, 2.0] and c["count"].tolist() == [2, 2, 1]
    assert c["base_prob"][0] == pytest.approx(0.075)
    assert top_shifted_tokens(d) == [("Hi", 2)]


def _reference_ranks(base, tok, query: str, answer_ids: list[int]) -> list[int]:
    """Token-by-token loop as in the released code: one forward per position."""
    ctx = tok(BASE_TEMPLATE.format(query=query), add_special_tokens=False)["input_ids"]
    ranks = []
    for t, target in enumerate(answer_ids):
        ids = torch.tensor([ctx + answer_ids[:t]])
        with torch.no_grad():
            logits = base(input_ids=ids).logits[0, -1]
        ranks.append(int((logits > logits[target]).sum()) + 1)
    return ranks


def test_ranks_from_two_tiny_models_match_the_token_loop() -> None:
    from alignkit.models import load_model

    base, tok = load_model("tiny-random", seed=0)
    aligned, _ = load_model("tiny-random", seed=1)
    queries = ["Name a colour.", "What is 2+2?"]
    data = token_ranks_from_models(base, aligned, tok, queries, max_new_tokens=6, progress=False)
    assert len(data.ranks) == 2 and all(1 <= len(r) <= 6 for r in data.ranks)
    for q, ranks, tokens in zip(queries, data.ranks, data.tokens, strict=True):
        ids = tok.convert_tokens_to_ids(tokens)
        assert ranks.tolist() == _reference_ranks(base, tok, q, ids)
    for probs, kl in zip(data.base_probs, data.kl, strict=True):
        assert ((probs > 0) & (probs <= 1)).all() and (kl >= 0).all()
    res = tds_fractions(data)
    assert res.unshifted.value + res.marginal.value + res.shifted.value == pytest.approx(1.0)


def test_identical_models_have_no_shift_on_their_greedy_answer() -> None:
    from alignkit.models import load_model

    model, tok = load_model("tiny-random", seed=0)
    # with the base template equal to the chat context, the greedy answer is the base argmax at every position
    chat = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True, tokenize=False)
    data = token_ranks_from_models(model, model, tok, ["Hello"], base_template=chat.replace("{", "{{").replace(
        "}", "}}").replace("Hello", "{query}"), max_new_tokens=5, progress=False)
    assert data.ranks[0].tolist() == [1] * len(data.ranks[0])
    assert np.allclose(data.kl[0], 0.0, atol=1e-5)
    assert tds_fractions(data).unshifted.value == 1.0


def test_given_answers_and_tokenizer_mismatch() -> None:
    from alignkit.models import load_model

    base, tok = load_model("tiny-random", seed=0)
    data = token_ranks_from_models(base, base, tok, ["Q?"], answers=["Blue sky"], progress=False)
    assert data.tokens[0] == tok.convert_ids_to_tokens(tok("Blue sky", add_special_tokens=False)["input_ids"])
    with pytest.raises(DataError, match="1 queries but 2 answers"):
        token_ranks_from_models(base, base, tok, ["Q?"], answers=["a", "b"], progress=False)

    class OtherTokenizer:
        def get_vocab(self) -> dict[str, int]:
            return {"a": 0}

    from alignkit.errors import ModelError

    with pytest.raises(ModelError, match="share a tokenizer"):
        token_ranks_from_models(base, base, tok, ["Q?"], base_tokenizer=OtherTokenizer(), progress=False)
