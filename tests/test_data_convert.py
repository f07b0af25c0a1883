"""Converters between data kinds: exact outputs, tie handling and counted skips."""

from __future__ import annotations

import pytest

from alignkit.data.convert import (
    convert,
    listwise_to_pairwise,
    pairwise_to_listwise,
    pairwise_to_unpaired,
    scored_to_listwise,
)
from alignkit.data.records import (
    JudgedExample,
    ListwiseExample,
    PairwiseExample,
    ScoredExample,
    SFTExample,
    UnpairedExample,
)
from alignkit.errors import ConfigError, DataError

# Scores 3 > 2 = 2 > 1: one tie (b, c).
RANKED = ListwiseExample("p", ["a", "b", "c", "d"], [3.0, 2.0, 2.0, 1.0], {"id": 7})


def pairs_of(records: list[PairwiseExample]) -> list[tuple[str, str]]:
    return [(r.chosen, r.rejected) for r in records]


def test_all_pairs_skips_and_counts_ties() -> None:
    pairs, stats = listwise_to_pairwise([RANKED], "all-pairs")
    assert pairs_of(pairs) == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")]
    assert (stats.inputs, stats.outputs, stats.skipped["ties"]) == (1, 5, 1)
    assert pairs[0].metadata == {"id": 7, "chosen_score": 3.0, "rejected_score": 2.0}
    assert pairs[0].margin is None


def test_all_pairs_puts_the_higher_score_first_whatever_the_order() -> None:
    pairs, _ = listwise_to_pairwise([ListwiseExample("p", ["lo", "hi"], [0.0, 1.0])], "all-pairs", with_margin=True)
    assert pairs_of(pairs) == [("hi", "lo")] and pairs[0].margin == 1.0


def test_best_vs_worst_takes_first_best_and_first_worst() -> None:
    pairs, stats = listwise_to_pairwise([RANKED, ListwiseExample("q", ["x", "y", "z"], [1.0, 5.0, 5.0])],
                                        "best-vs-worst")
    assert pairs_of(pairs) == [("a", "d"), ("y", "x")]
    assert stats.outputs == 2 and not stats.skipped


def test_adjacent_pairs_neighbours_after_sorting() -> None:
    pairs, stats = listwise_to_pairwise([ListwiseExample("p", ["c", "a", "d", "b"], [2.0, 4.0, 1.0, 3.0]),
                                         RANKED], "adjacent")
    assert pairs_of(pairs) == [("a", "b"), ("b", "c"), ("c", "d"), ("a", "b"), ("c", "d")]
    assert stats.skipped["ties"] == 1


def test_all_tied_list_gives_no_pair_and_is_counted() -> None:
    pairs, stats = listwise_to_pairwise([ListwiseExample("p", ["a", "b", "c"], [1.0, 1.0, 1.0])], "best-vs-worst")
    assert pairs == [] and stats.skipped == {"ties": 1, "lists that gave no pair": 1}
    assert "skipped" in stats.summary()


def test_identical_texts_with_different_scores_are_counted() -> None:
    pairs, stats = listwise_to_pairwise([ListwiseExample("p", ["a", "a", "b"], [2.0, 1.0, 0.0])])
    assert pairs_of(pairs) == [("a", "b"), ("a", "b")]
    assert stats.skipped["identical texts with different scores"] == 1


def test_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="mode"):
        listwise_to_pairwise([RANKED], "best")  # type: ignore[arg-type]


def test_pairwise_to_unpaired_labels_chosen_true_rejected_false() -> None:
    out, stats = pairwise_to_unpaired([PairwiseExample("p", "good", "bad", 1.0, {"id": 1})])
    assert out == [UnpairedExample("p", "good", True), UnpairedExample("p", "bad", False)]
    assert out[0].metadata == {"id": 1} and (stats.inputs, stats.outputs) == (1, 2)


def test_pairwise_to_listwise_scores_wins_and_win_rates() -> None:
    pairs = [PairwiseExample("p", "a", "b", metadata={"src": "s", "n": 1}),
             PairwiseExample("p", "a", "c", metadata={"src": "s", "n": 2}),
             PairwiseExample("p", "b", "c", metadata={"src": "s", "n": 3}),
             PairwiseExample([{"role": "user", "content": "p"}], "x", "y")]
    lists, stats = pairwise_to_listwise(pairs)
    assert lists == [ListwiseExample("p", ["a", "b", "c"], [2.0, 1.0, 0.0]),
                     ListwiseExample([{"role": "user", "content": "p"}], ["x", "y"], [1.0, 0.0])]
    assert lists[0].metadata == {"src": "s"}  # only what every pair of the group shares
    assert (stats.inputs, stats.outputs) == (4, 2)
    rates, _ = pairwise_to_listwise(pairs[:3], score="win_rate")
    assert rates[0].scores == [1.0, 0.5, 0.0]


def test_listwise_pairwise_listwise_round_trip_keeps_the_order() -> None:
    pairs, _ = listwise_to_pairwise([ListwiseExample("p", ["a", "b", "c"], [0.1, 0.9, 0.5])])
    (back,), _ = pairwise_to_listwise(pairs)
    ranking = [t for _, t in sorted(zip(back.scores, back.completions, strict=True), reverse=True)]
    assert ranking == ["b", "c", "a"]


def test_scored_to_listwise_by_attribute_and_by_weights() -> None:
    records = [ScoredExample("p", "a", {"help": 1.0, "len": 3.0}), ScoredExample("p", "b", {"help": 0.0, "len": 1.0}),
               ScoredExample("q", "c", {"help": 1.0, "len": 1.0}), ScoredExample("p", "d", {"len": 2.0})]
    lists, stats = scored_to_listwise(records, attribute="help")
    assert lists == [ListwiseExample("p", ["a", "b"], [1.0, 0.0])]
    assert stats.skipped == {"records without help": 1, "prompts with fewer than 2 completions": 1}
    lists, _ = scored_to_listwise(records, weights={"help": 1.0, "len": -0.5})
    assert lists == [ListwiseExample("p", ["a", "b"], [-0.5, -0.5])]
    with pytest.raises(ConfigError, match="several attributes"):
        scored_to_listwise(records)


def test_scored_to_listwise_single_attribute_judged_and_repeats() -> None:
    lists, stats = scored_to_listwise([ScoredExample("p", "a", {"s": 1}), ScoredExample("p", "a", {"s": 2}),
                                       ScoredExample("p", "b", {"s": 0})])
    assert lists == [ListwiseExample("p", ["a", "b"], [1.0, 0.0])] and stats.skipped["repeated completions"] == 1
    lists, _ = scored_to_listwise([JudgedExample("p", "a", "ok", 7.0), JudgedExample("p", "b", "meh", 3.0)])
    assert lists == [ListwiseExample("p", ["a", "b"], [7.0, 3.0])]


def test_convert_dispatch_and_chains() -> None:
    out, stats = convert([RANKED], "listwise", "unpaired", mode="best-vs-worst")
    assert out == [UnpairedExample("p", "a", True), UnpairedExample("p", "d", False)]
    assert stats.inputs == 1 and stats.outputs == 2
    scored = [ScoredExample("p", "a", {"s": 1.0}), ScoredExample("p", "b", {"s": 0.0})]
    out, _ = convert(scored, "scored", "pairwise", attribute="s")
    assert out == [PairwiseExample("p", "a", "b")]
    with pytest.raises(ConfigError, match="no conversion from sft to pairwise"):
        convert([SFTExample("p", "c")], "sft", "pairwise")


def test_wrong_record_type_is_a_data_error() -> None:
    with pytest.raises(DataError, match="record 0 is SFTExample"):
        pairwise_to_unpaired([SFTExample("p", "c")])  # type: ignore[list-item]
