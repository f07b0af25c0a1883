"""Shared tokenisation: exactly the completion tokens and EOS are labelled; truncation follows its policy and is
counted (alignkit.data.tokenize)."""

from __future__ import annotations

import copy

import pytest

from alignkit.data.tokenize import (
    IGNORE_INDEX,
    TooLong,
    TruncationStats,
    encode_completion,
    encode_example,
    encode_prompt,
    fit_lengths,
    render_prompt,
)
from alignkit.errors import DataError
from alignkit.models import load_tokenizer

CHAT = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the capital of Peru?"},
        {"role": "assistant", "content": "Lima."}, {"role": "user", "content": "And of Chile?"}]
COMPLETION = "Santiago is the capital of Chile."


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny-random")


def labelled(encoded) -> list[int]:
    return [t for t in encoded.labels if t != IGNORE_INDEX]


@pytest.mark.parametrize("prompt", ["What is the capital of Chile?", CHAT], ids=["string", "chat"])
def test_exactly_the_completion_and_eos_are_labelled(tok, prompt) -> None:
    enc = encode_example(tok, prompt, COMPLETION)
    n = len(enc.prompt_ids)
    assert enc.input_ids[:n] == tok(render_prompt(tok, prompt), add_special_tokens=False)["input_ids"]
    assert enc.labels[:n] == [IGNORE_INDEX] * n
    assert enc.labels[n:] == enc.input_ids[n:] == tok(COMPLETION, add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id]
    assert tok.decode(labelled(enc)) == COMPLETION + "<|im_end|>"
    assert len(enc.labels) == len(enc.input_ids)


def test_string_prompt_goes_through_the_chat_template_as_one_user_turn(tok) -> None:
    assert render_prompt(tok, "Hi") == render_prompt(tok, [{"role": "user", "content": "Hi"}])
    assert render_prompt(tok, "Hi").endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert render_prompt(tok, "Hi", template="never") == "Hi"
    assert encode_prompt(tok, "Hi", template="never") == tok("Hi", add_special_tokens=False)["input_ids"]


def test_template_rules_without_a_chat_template(tok) -> None:
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    assert render_prompt(bare, "Hi") == "Hi"
    with pytest.raises(DataError, match="no chat template"):
        render_prompt(bare, "Hi", template="always")
    with pytest.raises(DataError, match="needs a chat template"):
        render_prompt(tok, CHAT, template="never")


def test_completion_gets_one_eos(tok) -> None:
    ids = encode_completion(tok, "ok")
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    assert encode_completion(tok, "ok", add_eos=False) == ids[:-1]


# Worked numbers on plain id lists: prompt 1..10, completion 11..15.
P, C = list(range(1, 11)), list(range(11, 16))


def test_fit_within_limits_changes_nothing_and_counts_nothing() -> None:
    stats = TruncationStats()
    enc = fit_lengths(P, C, 15, None, "keep_end", stats)
    assert (enc.prompt_ids, enc.completion_ids) == (P, C)
    assert (stats.examples, stats.prompt_truncated, stats.completion_truncated, stats.dropped) == (1, 0, 0, 0)


def test_keep_end_cuts_the_completion_from_the_right_when_the_prompt_fits() -> None:
    stats = TruncationStats()
    enc = fit_lengths(P, C, 12, None, "keep_end", stats)
    assert (enc.prompt_ids, enc.completion_ids) == (P, [11, 12])
    assert enc.labels == [IGNORE_INDEX] * 10 + [11, 12]
    assert (stats.prompt_truncated, stats.completion_truncated) == (0, 1)


def test_keep_end_keeps_the_prompt_end_and_one_completion_token() -> None:
    stats = TruncationStats()
    enc = fit_lengths(P, C, 8, None, "keep_end", stats)
    assert (enc.prompt_ids, enc.completion_ids) == (P[3:], [11])
    assert (stats.prompt_truncated, stats.completion_truncated) == (1, 1)


def test_max_prompt_length_cuts_from_the_left_and_counts_once() -> None:
    stats = TruncationStats()
    enc = fit_lengths(P, C, None, 4, "keep_end", stats)
    assert (enc.prompt_ids, enc.completion_ids) == ([7, 8, 9, 10], C)
    enc = fit_lengths(P, C, 6, 4, "keep_end", stats)
    assert (enc.prompt_ids, enc.completion_ids) == ([7, 8, 9, 10], [11, 12])
    assert (stats.examples, stats.prompt_truncated, stats.completion_truncated) == (2, 2, 1)


def test_drop_policy_raises_too_long_and_counts() -> None:
    stats = TruncationStats()
    with pytest.raises(TooLong):
        fit_lengths(P, C, 14, None, "drop", stats)
    with pytest.raises(TooLong):
        fit_lengths(P, C, None, 9, "drop", stats)
    assert fit_lengths(P, C, 15, 10, "drop", stats).input_ids == P + C
    assert (stats.examples, stats.dropped, stats.reasons["too long"]) == (3, 2, 2)
    assert "2 dropped" in stats.summary()
    assert isinstance(TooLong("x"), DataError)


@pytest.mark.parametrize("prompt", ["Name the capital of Chile, please, and say it politely.", CHAT],
                         ids=["string", "chat"])
def test_truncated_real_example_labels_only_kept_completion_tokens(tok, prompt) -> None:
    full = encode_example(tok, prompt, COMPLETION)
    limit = len(full.prompt_ids) + 3
    stats = TruncationStats()
    enc = encode_example(tok, prompt, COMPLETION, max_length=limit, stats=stats)
    assert len(enc.input_ids) == limit and enc.prompt_ids == full.prompt_ids
    assert labelled(enc) == full.completion_ids[:3]  # the EOS is cut off with the tail
    assert stats.completion_truncated == 1
    short = encode_example(tok, prompt, COMPLETION, max_length=limit - 6, stats=stats)
    assert short.prompt_ids == full.prompt_ids[-(limit - 7):] and labelled(short) == full.completion_ids[:1]
    assert (stats.examples, stats.prompt_truncated, stats.completion_truncated) == (2, 1, 2)
    with pytest.raises(TooLong):
        encode_example(tok, prompt, COMPLETION, max_length=limit, policy="drop", stats=stats)
    assert stats.dropped == 1
