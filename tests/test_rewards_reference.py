"""BLEU/chrF rewards (objectives.md §9.1): BLEUBERI's smoothing, sacrebleu parity, references, <answer> spans."""

from __future__ import annotations

import pytest
import sacrebleu

from alignkit.rewards.reference import (
    ReferenceReward,
    bleu_reward,
    chrf_reward,
    corpus_bleu,
    extract_answer,
    sentence_bleu,
    sentence_chrf,
)

HYP, REF = "the cat sat on the mat", "the cat is on the mat"


def test_bleuberi_worked_example() -> None:
    # p = [6/7, 4/6, 2/5, 1/4] (add-one on every order), BP = 1 -> 0.4889230.
    assert sentence_bleu(HYP, [REF]) == pytest.approx(0.4889230, abs=1e-7)


def test_sacrebleu_add_k_differs_from_bleuberi() -> None:
    # sacrebleu's add-k leaves unigrams unsmoothed (p1 = 5/6): documented difference.
    add_k = sacrebleu.sentence_bleu(HYP, [REF], smooth_method="add-k", smooth_value=1).score / 100
    assert add_k == pytest.approx(0.4854918, abs=1e-7)
    assert sentence_bleu(HYP, [REF], method="sacrebleu", smooth_method="add-k") == pytest.approx(add_k)


@pytest.mark.parametrize("smooth", ["exp", "floor", "add-k", "none"])
def test_sacrebleu_method_equals_sacrebleu(smooth: str) -> None:
    refs = ["the cat is on the mat", "there is a cat on the mat"]
    want = sacrebleu.sentence_bleu(HYP, refs, smooth_method=smooth).score / 100
    assert sentence_bleu(HYP, refs, method="sacrebleu", smooth_method=smooth) == pytest.approx(want)
    hyps = [HYP, "a dog barks loudly"]
    ref_lists = [refs, ["the dog barks loudly"]]
    want_c = sacrebleu.corpus_bleu(hyps, [[refs[0], "the dog barks loudly"], [refs[1], None]],
                                   smooth_method=smooth).score / 100
    assert corpus_bleu(hyps, ref_lists, method="sacrebleu", smooth_method=smooth) == pytest.approx(want_c)


def test_multiple_references_and_shortest_length_bp() -> None:
    # Counts clip against the max over references; BP uses the shortest reference.
    assert sentence_bleu(HYP, [REF, "the cat sat on the mat"]) == pytest.approx(1.0)
    short = sentence_bleu("the cat", ["the cat is on the mat", "the cat sat"])
    assert 0 < short < sentence_bleu("the cat", ["the cat"])


def test_corpus_bleuberi_pools_statistics() -> None:
    assert corpus_bleu([HYP], [[REF]]) == pytest.approx(sentence_bleu(HYP, [REF]))
    two = corpus_bleu([HYP, HYP], [[REF], [REF]])
    assert two != pytest.approx(sentence_bleu(HYP, [REF]))  # smoothing applies once to pooled counts


def test_chrf_equals_sacrebleu() -> None:
    want = sacrebleu.sentence_chrf(HYP, [REF]).score / 100
    assert sentence_chrf(HYP, [REF]) == pytest.approx(want)
    assert sentence_chrf(HYP, [REF], word_order=2) == pytest.approx(
        sacrebleu.sentence_chrf(HYP, [REF], word_order=2).score / 100)


def test_reward_handles_answer_spans_empties_and_missing_references() -> None:
    r = bleu_reward()
    res = r(["p"] * 4, [f"thinking...<answer>{HYP}</answer>", "", HYP, HYP],
            references=[[REF], [REF], [], REF])
    assert res.scores[0] == pytest.approx(0.4889230, abs=1e-7)
    assert res.scores[1] == 0.0 and res.scores[2] == 0.0
    assert res.scores[3] == pytest.approx(0.4889230, abs=1e-7)  # a bare string is one reference
    assert res.info == {"without_references": 1, "empty_completions": 1}
    assert extract_answer("x <answer> 42 </answer> y") == "42"
    assert ReferenceReward("bleu", answer_span=False)(["p"], [f"<answer>{HYP}</answer>"],
                                                      references=[[REF]]).scores[0] < 0.4889
    assert chrf_reward()(["p"], [HYP], references=[[REF]]).scores[0] == pytest.approx(sentence_chrf(HYP, [REF]))
