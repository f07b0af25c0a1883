"""Reward-augmented relabelling (spec §6.1): doubling, the flip, score formatting, drops counted."""

from __future__ import annotations

import pytest

from alignkit.data.records import PairwiseExample
from alignkit.data.relabel import condition_prompt, format_score, goal_prompt, reward_augment
from alignkit.errors import DataError


def pair(r_w: object = 8.0, r_l: object = 5.0, prompt: object = "Say hi.") -> PairwiseExample:
    return PairwiseExample(prompt=prompt, chosen="Hi!", rejected="Go away.",
                           metadata={"id": 1, "score_chosen": r_w, "score_rejected": r_l})


def test_each_pair_becomes_two_with_the_flip() -> None:
    out, report = reward_augment([pair()])
    assert report.pairs_in == 1 and report.pairs_out == 2 and len(out) == 2
    first, second = out
    assert (first.chosen, first.rejected) == ("Hi!", "Go away.")
    assert (second.chosen, second.rejected) == ("Go away.", "Hi!")
    assert first.prompt[0]["role"] == "system" and "Overall score: 8." in first.prompt[0]["content"]
    assert "Overall score: 5." in second.prompt[0]["content"]
    assert first.prompt[1] == {"role": "user", "content": "Say hi."}
    assert first.metadata["goal_score"] == 8.0 and second.metadata["relabel"] == "goal_rejected"
    assert first.metadata["id"] == 1 and first.margin == 3.0


def test_score_formatting() -> None:
    assert format_score(8.0) == "8" and format_score(7.5) == "7.5"
    assert goal_prompt(10).endswith("Overall score: 10.")


def test_equal_and_missing_scores_are_dropped_and_counted() -> None:
    out, report = reward_augment([pair(7, 7), pair(None, 3), pair(-100, 2), pair(9, 2)])
    assert len(out) == 2
    assert report.dropped == {"equal_scores": 1, "missing_score": 2}


def test_scores_passed_in_override_metadata() -> None:
    out, _ = reward_augment([pair(None, None)], scores=[(6.0, 2.5)])
    assert "Overall score: 2.5." in out[1].prompt[0]["content"]
    with pytest.raises(DataError, match="score pairs"):
        reward_augment([pair()], scores=[])


def test_no_system_role_prepends_to_first_user_turn() -> None:
    chat = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
    out = condition_prompt(chat, "GOAL", system_role=False)
    assert out[0]["content"] == "GOAL\n\nQ1" and out[2]["content"] == "Q2"
    assert chat[0]["content"] == "Q1"  # input untouched
    assert condition_prompt("Q", "GOAL", system_role=False) == "GOAL\n\nQ"


def test_existing_system_message_is_extended() -> None:
    out = condition_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}], "GOAL")
    assert out[0] == {"role": "system", "content": "GOAL\n\nBe brief."} and len(out) == 2
