"""Early rejection is a proof, not a guess: a prefix it condemns fails the real IFEval check however the answer
goes on, the samples it does not stop are exactly those of plain sampling, and RFT selects the same
demonstrations with it as without it."""

from __future__ import annotations

import random

import pytest

from alignkit.rewards.early_reject import RULES, doomed_check
from alignkit.rewards.verifiers import Constraint, check_constraints

CASES = [
    ("change_case:english_lowercase", {}),
    ("change_case:english_capital", {}),
    ("punctuation:no_comma", {}),
    ("keywords:forbidden_words", {"forbidden_words": ["cat", "red sky"]}),
    ("startend:quotation", {}),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say Hi, cat."}),
    ("length_constraints:number_words", {"num_words": 6, "relation": "less than"}),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": "less than"}),
]
PIECES = ["cat", "cats", "Cat", " ", "  ", "\n", ",", ".", '"', "red", " sky", "say hi", "SAY HI", "a", "A", "the",
          "THE", "dog", "é", "x"]


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))) for _ in range(n)]


@pytest.mark.parametrize(("cid", "kwargs"), CASES)
def test_a_condemned_prefix_fails_the_real_check_for_every_continuation(cid: str, kwargs: dict) -> None:
    doomed = doomed_check([{"id": cid, "kwargs": kwargs}])
    assert doomed is not None
    constraint = [Constraint(cid, kwargs)]
    condemned = 0
    for text in _texts(len(cid), 300) + ['"Say hi, cat."', "say hi, cat. then more", "a cat sat"]:
        passes: bool | None = None
        for cut in range(1, len(text) + 1):
            if doomed(text[:cut]):
                condemned += 1
                if passes is None:
                    passes = check_constraints("", text, constraint)[0]["strict"]
                assert not passes, (cid, text[:cut], text)
    assert condemned > 50  # the rule does fire


@pytest.mark.parametrize(("text", "cid", "kwargs", "expected"), [
    ("hello There", "change_case:english_lowercase", {}, True),
    ("hello there", "change_case:english_lowercase", {}, False),
    ("HELLO a", "change_case:english_capital", {}, True),
    ("no commas here", "punctuation:no_comma", {}, False),
    ("one, two", "punctuation:no_comma", {}, True),
    ("the cat", "keywords:forbidden_words", {"forbidden_words": ["cat"]}, False),  # "cats" may follow
    ("the cat ", "keywords:forbidden_words", {"forbidden_words": ["cat"]}, True),
    ("  \n", "startend:quotation", {}, False),
    ('  "Hi', "startend:quotation", {}, False),
    ("  Hi", "startend:quotation", {}, True),
    ("say h", "combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, False),
    ("say ho", "combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, True),
    ("one two three", "length_constraints:number_words", {"num_words": 3, "relation": "less than"}, True),
    ("one two", "length_constraints:number_words", {"num_words": 3, "relation": "less than"}, False),
])
def test_rules_on_hand_picked_prefixes(text: str, cid: str, kwargs: dict, expected: bool) -> None:
    doomed = doomed_check([{"id": cid, "kwargs": kwargs}])
    assert doomed is not None and doomed(text) is expected


def test_constraints_that_only_the_end_decides_are_left_to_the_final_check() -> None:
    assert doomed_check([{"id": "startend:end_checker", "kwargs": {"end_phrase": "Bye."}}]) is None
    assert doomed_check([{"id": "length_constraints:number_words", "kwargs": {"num_words": 5,
                                                                               "relation": "at least"}}]) is None
    both = doomed_check([Constraint("detectable_content:postscript", {"postscript_marker": "P.S."}),
                         Constraint("punctuation:no_comma", {})])
    assert both is not None and both("a, b") and not both("a b")
    assert set(RULES) == {c for c, _ in CASES}


def test_rejected_rows_stop_early_and_the_others_are_unchanged() -> None:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    sampler = HFSampler(*load_model("tiny-random"), max_batch_rows=4)
    prompts = [f"Prompt {i}" for i in range(6)]
    plain = sampler.sample(prompts, n=2, max_new_tokens=24, seed=4)
    has_e = [None if i % 2 else (lambda t: "e" in t) for i in range(6)]  # reject rows of even prompts at an "e"
    early = sampler.sample(prompts, n=2, max_new_tokens=24, seed=4, reject=has_e)
    rejected = 0
    for i, (a_row, b_row) in enumerate(zip(plain, early, strict=True)):
        for a, b in zip(a_row, b_row, strict=True):
            if b.finish_reason == "rejected":
                rejected += 1
                assert i % 2 == 0 and "e" in b.text and len(b.token_ids) % 4 == 0
                assert a.token_ids[:len(b.token_ids)] == b.token_ids  # the same stream, cut short
            else:
                assert b.token_ids == a.token_ids and b.finish_reason == a.finish_reason
    assert rejected >= 3


def test_rft_selects_the_same_demonstrations_with_early_rejection(tmp_path) -> None:  # noqa: ANN001
    from alignkit.data.build.common import SamplingSettings, items_from_prompts
    from alignkit.data.records import PromptExample
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model
    from alignkit.pipelines.selfdata import ScoredSamplesBuilder, list_stats, select_rft
    from alignkit.rewards.registry import load_reward

    sampler = HFSampler(*load_model("tiny-random"), max_batch_rows=8)
    prompts = [PromptExample(f"Write about topic {i}.", constraints=[{"id": "punctuation:no_comma", "kwargs": {}}])
               for i in range(8)]
    settings = SamplingSettings(n=4, max_new_tokens=16, temperature=1.0, seed=2)
    picked, stats = [], []
    for early in (False, True):
        builder = ScoredSamplesBuilder(sampler, load_reward("csr"), settings, policy_name="tiny",
                                       reward_spec="csr", early_reject=early)
        lists = [o.records[0] for o in builder.build(items_from_prompts(prompts))]
        picked.append([(r.prompt, r.completion) for r in select_rft(lists, require_eos=False, per_prompt=4).records])
        stats.append(list_stats(lists))
    assert picked[0] == picked[1] and picked[0]
    assert stats[0]["rejected_rate"] == 0 < stats[1]["rejected_rate"]
