"""IFEval aggregation (spec B8): prompt-level = all instructions followed; instruction-level = pooled fraction."""

from __future__ import annotations

import pytest

from alignkit.errors import AlignkitError, DataError
from alignkit.evaluate.ifeval import check_instructions, ifeval_accuracy, loose_variants

# 3 prompts, 5 instructions. Strict: [T,F], [T], [F,F]; loose rescues prompt 0's second and prompt 2's first
# instruction (e.g. a "**" wrapper or a preamble line).
STRICT = [[True, False], [True], [False, False]]
LOOSE = [[True, True], [True], [True, False]]
IDS = [["keywords:existence", "detectable_format:title"], ["length_constraints:number_words"],
       ["keywords:existence", "startend:quotation"]]


def test_four_headline_numbers() -> None:
    r = ifeval_accuracy(STRICT, LOOSE, IDS)
    assert r.prompt_strict.value == pytest.approx(1 / 3)  # only prompt 1
    assert r.prompt_loose.value == pytest.approx(2 / 3)  # prompts 0 and 1
    assert r.instruction_strict.value == pytest.approx(2 / 5)
    assert r.instruction_loose.value == pytest.approx(4 / 5)
    assert (r.n_prompts, r.n_instructions) == (3, 5)
    for e in r.headline().values():
        assert e.low <= e.value <= e.high and e.n == 3


def test_per_type_breakdowns() -> None:
    r = ifeval_accuracy(STRICT, LOOSE, IDS)
    assert r.by_type_strict["keywords:existence"] == (1, 2)
    assert r.by_type_loose["keywords:existence"] == (2, 2)
    assert r.by_tier0_strict["detectable_format"] == (0, 1)
    assert r.as_dict()["by_tier0_loose"]["startend"] == {"followed": 0, "total": 1, "accuracy": 0.0}


def test_loose_defaults_to_strict() -> None:
    r = ifeval_accuracy(STRICT)
    assert r.prompt_loose == r.prompt_strict and r.instruction_loose == r.instruction_strict


def test_invalid_inputs() -> None:
    with pytest.raises(DataError, match="passes strict but fails loose"):
        ifeval_accuracy([[True]], [[False]])
    with pytest.raises(DataError, match="no instructions"):
        ifeval_accuracy([[True], []])
    with pytest.raises(DataError, match=r"strict\[0\]\[0\]"):
        ifeval_accuracy([["yes"]])
    with pytest.raises(DataError, match="1 strict results but 2 loose"):
        ifeval_accuracy([[True]], [[True, True]])


def test_loose_variants_are_the_eight_official_ones() -> None:
    v = loose_variants("Sure!\n**Title**\nbody\nHope this helps")
    assert v[0] == "Sure!\n**Title**\nbody\nHope this helps"
    assert v[1] == "Sure!\nTitle\nbody\nHope this helps"
    assert v[2] == "**Title**\nbody\nHope this helps"
    assert v[3] == "Sure!\n**Title**\nbody"
    assert v[4] == "**Title**\nbody"
    assert v[5:] == ["Title\nbody\nHope this helps", "Sure!\nTitle\nbody", "Title\nbody"]


def test_check_instructions_strict_and_loose() -> None:
    # "Sure!" first line breaks the quotation constraint strictly; removing the first line satisfies it (loose).
    responses = ['Sure!\n"Hello there"', '"Hi"', ""]
    ids = [["startend:quotation"], ["startend:quotation"], ["startend:quotation"]]
    strict, loose = check_instructions(["q1", "q2", "q3"], responses, ids, [[{}], [{}], [{}]])
    assert strict == [[False], [True], [False]]
    assert loose == [[True], [True], [False]]
    r = ifeval_accuracy(strict, loose)
    assert r.prompt_strict.value == pytest.approx(1 / 3) and r.prompt_loose.value == pytest.approx(2 / 3)
    with pytest.raises(AlignkitError, match="(?i)unknown ifeval instruction id"):
        check_instructions(["q"], ["a"], [["nope:nothing"]], [[{}]])
    with pytest.raises(AlignkitError, match="(?i)unknown ifbench instruction id"):
        check_instructions(["q"], ["a"], [["nope:nothing"]], [[{}]], benchmark="ifbench")


def test_check_instructions_nltk_checkers_work_offline() -> None:
    strict, loose = check_instructions(["Write 2 sentences."], ["One here. Two here."],
                                       [["length_constraints:number_sentences"]],
                                       [[{"relation": "at least", "num_sentences": 2}]])
    assert strict == [[True]] and loose == [[True]]
