"""I-SHEEP and CycleAlign pure pieces against the spec's vectors (wave2_selfalign_merge.md §1, §2, §11)."""

from __future__ import annotations

import itertools
import random

import pytest

from alignkit.pipelines.cyclealign import agreement, belief_ranking, parse_ranking, scores_from_ranking
from alignkit.pipelines.isheep import (
    RuleFilter,
    dedup,
    instruction_drop_reason,
    parse_score,
    rouge_l_f1,
    select_training_pairs,
)


def test_score_parser_vectors() -> None:
    got = [parse_score(t) for t in ("9||clear and correct", " **10** || fine", "Score: 9||ok", "8.6||ok",
                                    "8.5||ok", "11||x", "I think 9")]
    assert got == [9, 10, -1, 9, 8, -1, -1]


def test_threshold_filter_keeps_three_of_five() -> None:
    rows = [{"quality_score": q, "following_score": f} for q, f in ((9, 10), (8, 10), (10, 9), (9, 9), (7, 3))]
    kept, rate = select_training_pairs(rows, threshold=8)
    assert rate == pytest.approx(0.600000) and len(kept) == 3
    assert select_training_pairs([{"quality_score": 9, "following_score": parse_score("8.5||ok")}])[0] == []


def test_rouge_l_vectors_and_dedup() -> None:
    assert rouge_l_f1("Write a short poem about the sea.", "Write a poem about the sea.") == pytest.approx(0.923077,
                                                                                                          abs=1e-6)
    assert rouge_l_f1("List three uses of copper in electronics.", "Name three famous painters.") == pytest.approx(
        0.181818, abs=1e-6)
    kept = dedup(["Write a short poem about the sea.", "List three uses of copper in electronics.",
                  "List three uses of copper in electronics today."], seeds=["Write a poem about the sea."])
    assert [k for k, _ in kept] == ["List three uses of copper in electronics."]
    assert dedup(["a b c d", "a b c e"], []) == dedup(["a b c d", "a b c e"], [])  # deterministic in order


def test_instruction_and_output_rules() -> None:
    assert instruction_drop_reason("Explain it now.") == "length"  # ≤ 3 words
    assert instruction_drop_reason("Draw a map of your town.") == "media_word"
    assert instruction_drop_reason("Describe the picture of a cat in detail.") == "media_word"
    assert instruction_drop_reason("Summarize the following article briefly please.", "<noinput>") == "noinput"
    assert instruction_drop_reason("Explain why the sky looks blue at noon.") is None
    strict, loose = RuleFilter(strict=True), RuleFilter(strict=False)
    out = "Metals conduct heat, e.g. copper."
    assert strict.check("Name a conductor of heat.", "", out)[1] == "choice_letters"  # the over-broad rule
    assert loose.check("Name a conductor of heat.", "", out)[1] is None
    assert strict.check("Say hi.", "", "答案: Hello!") == ("Hello!", None)
    assert strict.check("Greet me.", "", "Hi!\nUser: thanks")[1] == "role_marker"
    assert strict.counts == {"choice_letters": 1, "role_marker": 1}


def test_cyclealign_worked_example() -> None:
    belief = belief_ranking([-2.0, -0.5, -0.9, -1.3])
    assert belief == [1, 2, 3, 0]
    assert agreement([0, 1, 2, 3], belief) == [1, 2, 3]
    assert scores_from_ranking([0, 1, 2, 3]) == [4.0, 3.0, 2.0, 1.0]


def _lcs_len(a: list[int], b: list[int]) -> int:
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, j in itertools.product(range(len(a)), range(len(b))):
        L[i + 1][j + 1] = L[i][j] + 1 if a[i] == b[j] else max(L[i][j + 1], L[i + 1][j])
    return L[-1][-1]


def _is_subsequence(s: list[int], seq: list[int]) -> bool:
    it = iter(seq)
    return all(x in it for x in s)


def test_agreement_properties() -> None:
    rng = random.Random(0)
    for _ in range(50):
        a = list(range(6))
        b = list(range(6))
        rng.shuffle(a)
        rng.shuffle(b)
        lcs = agreement(a, b)
        assert _is_subsequence(lcs, a) and _is_subsequence(lcs, b) and len(lcs) == _lcs_len(a, b)
    assert agreement([0, 1, 2], [0, 1, 2]) == [0, 1, 2]
    assert len(agreement([0, 1, 2, 3], [3, 2, 1, 0])) == 1


def test_ranking_parser_formats_and_rejections() -> None:
    assert parse_ranking("[2] > [1] > [3]", 3) == [1, 0, 2]
    assert parse_ranking("2 > 1 > 3", 3) == [1, 0, 2]
    assert parse_ranking("Response 2, Response 1, Response 3", 3) == [1, 0, 2]
    assert parse_ranking("[2] > [2] > [3]", 3) is None
    assert parse_ranking("[2] > [1]", 3) is None


def test_pas_worked_example() -> None:
    import numpy as np

    from alignkit.decode.pas import head_direction, holdout_split, o_proj_bias, search_alpha

    acts_a = np.array([[1.0, 0.5, 0.0], [0.8, 0.7, 0.1]])
    acts_e = np.array([[0.2, 0.1, 0.4], [0.1, 0.2, 0.9]])
    v, sigma = head_direction(acts_a, acts_e, [5, 2])
    assert v.tolist() == pytest.approx([0.235702, -0.235702, 0.942809], abs=1e-6)
    assert sigma == pytest.approx(0.289396, abs=1e-6)
    delta = 4 * sigma * v
    assert delta.tolist() == pytest.approx([0.272845, -0.272845, 1.091380], abs=1e-6)
    W_o = np.array([[1, 0, 0.5], [0, 2, 0], [0.5, 0, 1]])
    assert o_proj_bias(W_o, {0: delta}, 1, 3).tolist() == pytest.approx([0.818535, -0.545690, 1.227803], abs=1e-6)
    preds = {0.0: {"O": [3, 3], "C": [3, 3]}, 2.0: {"O": [4, 4], "C": [3, 2]}, 4.0: {"O": [5, 5], "C": [1, 1]}}
    best, table = search_alpha(lambda a: preds[a], {"O": [4, 5], "C": [2, 1]}, alphas=[0.0, 2.0, 4.0])
    assert best == 4.0 and table == {0.0: 3.0, 2.0: 1.5, 4.0: 1.0}
    fit, held = holdout_split({"O": [f"o{i}" for i in range(10)], "C": [f"c{i}" for i in range(10)]})
    assert len(held) == 4 and not set(fit) & set(held) and sum(h.startswith("o") for h in held) == 2


def test_pas_alpha_with_no_parsed_answer_never_wins() -> None:
    from alignkit.decode.pas import search_alpha, trait_mae

    assert trait_mae({"O": [None, None], "C": [2, None]}, {"O": [4, 5], "C": [2, 1]}) == float("inf")
    assert trait_mae({"O": [4, None]}, {"O": [4, 5]}) == 0.0  # partly parsed: the None is skipped
    preds = {0.0: {"O": [3, 3]}, 8.0: {"O": [None, None]}}  # α = 8 breaks every answer
    best, table = search_alpha(lambda a: preds[a], {"O": [4, 5]}, alphas=[0.0, 8.0])
    assert best == 0.0 and table == {0.0: 1.5, 8.0: float("inf")}
