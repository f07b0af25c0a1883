"""The constraint prompt suite (issue #15 item 1): shipped sizes and layout, seeded generation equal to the shipped
files, every IFEval instruction type in both splits, compatible constraints with kwargs in IFEval's ranges, and
the first suite frozen as `-v1`."""

from __future__ import annotations

import copy
import hashlib
from collections import Counter

import pytest
from if_verifiable.ifeval import instructions_registry
from if_verifiable.ifeval.instructions_util import LANGUAGE_CODES

from alignkit.data.build.common import load_prompts
from alignkit.data.records import PromptExample
from alignkit.data.suite import (
    dumps_records,
    generate_suite,
    load_suite,
    suite_records,
    suite_text,
    write_suite,
)
from alignkit.data.suite_gen.generate import render_prompt
from alignkit.data.suite_gen.tasks import TOPICS, base_tasks, split_topics
from alignkit.errors import DataError
from alignkit.rewards.verifiers import install_offline_nltk

ALL_IDS = set(instructions_registry.INSTRUCTION_DICT)  # the 25 ids if-verifiable checks
SMALL = {"train": 40, "test": 30}


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict]]:
    return {s: suite_records(s) for s in ("train", "test")}


def test_shipped_sizes_and_record_layout(shipped):
    train, test = shipped["train"], shipped["test"]
    assert len(train) >= 5000 and len(test) >= 300
    for r in train + test:
        assert set(r) == {"id", "prompt", "base_task", "constraints", "templates", "topic", "topic_words"}
        assert 1 <= len(r["constraints"]) <= 3 and len(r["templates"]) == len(r["constraints"])
        assert all(set(c) == {"id", "kwargs"} for c in r["constraints"])
        assert r["prompt"].startswith(r["base_task"] + " ")
        assert r["prompt"] == render_prompt(r["base_task"], r["constraints"], r["templates"])
    assert len({r["id"] for r in train + test}) == len(train) + len(test)


def test_mostly_one_or_two_constraints(shipped):
    for records in shipped.values():
        counts = Counter(len(r["constraints"]) for r in records)
        assert counts[1] + counts[2] >= 0.8 * len(records) and counts[3] > 0


def test_base_tasks_number_in_the_thousands_and_each_prompt_has_its_own(shipped):
    topics = split_topics(0, 0.25)
    assert len(base_tasks(topics["train"])) > 5000 and len(base_tasks(topics["test"])) > 1000
    for records in shipped.values():
        assert len({r["base_task"] for r in records}) == len(records)


def test_shipped_files_are_the_generator_output_byte_for_byte():
    generated = generate_suite(seed=0)
    for split in ("train", "test"):
        assert dumps_records(generated[split]) == suite_text(split)


def test_generator_is_deterministic_per_seed():
    assert generate_suite(seed=3, sizes=SMALL) == generate_suite(seed=3, sizes=SMALL)
    assert generate_suite(seed=4, sizes=SMALL) != generate_suite(seed=3, sizes=SMALL)


def test_test_size_does_not_change_train():
    a = generate_suite(seed=2, sizes={"train": 30, "test": 30})
    b = generate_suite(seed=2, sizes={"train": 30, "test": 60})
    assert a["train"] == b["train"] and a["test"] != b["test"]


def test_every_instruction_type_appears_in_both_splits(shipped):
    for records in [*shipped.values(), *generate_suite(seed=9, sizes={"train": 25, "test": 25}).values()]:
        assert {c["id"] for r in records for c in r["constraints"]} == ALL_IDS


def test_no_prompt_holds_constraints_ifeval_calls_conflicting(shipped):
    table = instructions_registry.conflict_make(copy.deepcopy(instructions_registry.INSTRUCTION_CONFLICTS))
    for records in shipped.values():
        for r in records:
            ids = [c["id"] for c in r["constraints"]]
            for i, a in enumerate(ids):
                for b in ids[i + 1:]:
                    assert b not in table[a], (r["id"], a, b)


def test_kwargs_lie_in_ifeval_ranges_and_favour_short_answers(shipped):
    bounds = {"num_bullets": (1, 5), "num_highlights": (1, 4), "num_sentences": (1, 20), "num_paragraphs": (1, 5),
              "num_placeholders": (1, 4), "num_sections": (1, 5), "let_frequency": (1, 10),
              "capital_frequency": (1, 20), "num_words": (1, 150), "frequency": (1, 10)}
    for records in shipped.values():
        for r in records:
            for c in r["constraints"]:
                kw = c["kwargs"]
                for key, (lo, hi) in bounds.items():
                    if key in kw:
                        assert lo <= kw[key] <= hi, (r["id"], key, kw[key])
                for key in ("relation", "let_relation", "capital_relation"):
                    assert kw.get(key, "at least") in ("at least", "less than")
                assert kw.get("language", "en") in LANGUAGE_CODES
                assert len(kw.get("end_phrase", "").split()) <= 8
                if "nth_paragraph" in kw:
                    assert 1 <= kw["nth_paragraph"] <= kw["num_paragraphs"] <= 3
                if c["id"] == "combination:repeat_prompt":
                    assert r["constraints"][-1] is c and r["prompt"].startswith(kw["prompt_to_repeat"])


def test_every_shipped_constraint_builds_in_the_ifeval_checker_with_its_kwargs(shipped):
    install_offline_nltk()
    for records in shipped.values():
        for r in records:
            for c in r["constraints"]:
                checker = instructions_registry.INSTRUCTION_DICT[c["id"]](c["id"])
                checker.build_description(**c["kwargs"])
                args = checker.get_instruction_args() or {}
                assert {k: args[k] for k in c["kwargs"]} == c["kwargs"], (r["id"], c)


def test_keyword_constraints_use_the_topic_words(shipped):
    for r in shipped["test"]:
        for c in r["constraints"]:
            words = c["kwargs"].get("keywords", []) + c["kwargs"].get("forbidden_words", [])
            assert set(words) <= set(r["topic_words"])
            assert r["topic"] in r["base_task"]
    assert len(TOPICS) >= 100


def test_v1_splits_are_the_first_suite_byte_for_byte():
    digests = {"train-v1": "a2a95181de4c4de8e03516ca20be2129e80b8bd1cbec3c495e960e6adf36d569",
               "test-v1": "e3f70cc6f4455ccb321dba3792a4877a88e7831dca3373bbb4f769c449b6281a"}
    for split, digest in digests.items():
        assert hashlib.sha256(suite_text(split).encode("utf-8")).hexdigest() == digest
    assert (len(load_prompts("suite:train-v1")), len(load_prompts("suite:test-v1"))) == (256, 128)
    assert suite_records("test-v1")[0]["id"] == "test-0000"


def test_load_suite_and_suite_specs_give_prompt_examples_with_metadata():
    examples = load_prompts("suite:test")
    assert len(examples) == len(suite_records("test")) and all(isinstance(e, PromptExample) for e in examples)
    first = examples[0]
    assert first.constraints and first.metadata["id"] == "test-00000" and first.metadata["split"] == "test"
    assert first.metadata["templates"][0].startswith(first.constraints[0]["id"] + "@test.")
    assert first.metadata["topic_words"] and first.metadata["base_task"] in first.prompt
    with pytest.raises(DataError, match="unknown suite split"):
        load_suite("validation")


def test_write_suite_round_trips(tmp_path):
    paths = write_suite(tmp_path, seed=5, sizes={"train": 10, "test": 5})
    assert paths["train"].read_text(encoding="utf-8") == dumps_records(
        generate_suite(seed=5, sizes={"train": 10, "test": 5})["train"])


def test_render_prompt_rejects_inconsistent_records():
    no_comma = {"id": "punctuation:no_comma", "kwargs": {}}
    repeat = {"id": "combination:repeat_prompt", "kwargs": {"prompt_to_repeat": "Say hi."}}
    assert render_prompt("Say hi.", [repeat], ["combination:repeat_prompt@train.1"]) == (
        "Say hi. Begin by repeating the request above word for word (without this sentence), then answer it.")
    cases = [
        ([{"id": "nope:nothing", "kwargs": {}}], ["nope:nothing@train.0"], "unknown constraint id"),
        ([no_comma], ["startend:quotation@train.0"], "does not word constraint"),
        ([no_comma], ["punctuation:no_comma@train.9"], "unknown constraint template"),
        ([no_comma], [], "1 constraints but 0 templates"),
        ([repeat, no_comma], ["combination:repeat_prompt@train.0", "punctuation:no_comma@train.0"], "must be the last"),
        ([no_comma, repeat], ["punctuation:no_comma@train.0", "combination:repeat_prompt@train.0"], "prompt_to_repeat"),
        ([{"id": "keywords:existence", "kwargs": {}}], ["keywords:existence@train.0"], "lack"),
    ]
    for constraints, templates, message in cases:
        with pytest.raises(DataError, match=message):
            render_prompt("Say hi.", constraints, templates)


def test_generator_refuses_more_prompts_than_base_tasks():
    with pytest.raises(DataError, match="distinct base tasks"):
        generate_suite(seed=0, sizes={"train": 10, "test": 10**6})


def test_conflicts_are_symmetric_and_hold_ifevals_list_and_ours():
    from alignkit.data.suite_gen.kinds import CONSTRAINT_KINDS, conflicts

    ids = [k.id for k in CONSTRAINT_KINDS]
    assert all(conflicts(a, b) == conflicts(b, a) for a in ids for b in ids)
    assert conflicts("detectable_format:json_format", "punctuation:no_comma")  # IFEval: JSON excludes formats
    assert not conflicts("detectable_format:json_format", "keywords:existence")
    assert conflicts("startend:quotation", "detectable_format:title")  # IFEval
    assert conflicts("detectable_format:constrained_response", "punctuation:no_comma")  # IFEval: excludes all
    # ours: both want the answer's last characters; SECTION markers are all-caps words
    assert conflicts("startend:quotation", "startend:end_checker")
    assert conflicts("change_case:capital_word_frequency", "detectable_format:multiple_sections")
    assert not conflicts("punctuation:no_comma", "detectable_format:title")


def test_no_record_forbids_a_word_another_of_its_constraints_requires(shipped):
    import re

    for records in shipped.values():
        for r in records:
            forbidden = {w for c in r["constraints"] for w in c["kwargs"].get("forbidden_words", [])}
            required = {w for c in r["constraints"] if c["id"] != "keywords:forbidden_words"
                        for key in ("end_phrase", "first_word", "keyword", "keywords")
                        for w in re.findall(r"[a-z]+", str(c["kwargs"].get(key, "")).lower())}
            assert not forbidden & required, r["id"]


def test_end_phrases_avoid_the_topic_words_a_prompt_may_forbid():
    import random

    from alignkit.data.suite_gen.kinds import KINDS_BY_ID
    from alignkit.data.suite_gen.tasks import TOPICS, compose

    job = next(t for t in TOPICS if "questions" in t.words)  # "Any other questions?" is an IFEval end phrase
    task = compose("tips", job, "a new employee")
    rng = random.Random(0)
    phrases = {KINDS_BY_ID["startend:end_checker"].sample(rng, task)["end_phrase"] for _ in range(200)}
    assert len(phrases) >= 3 and not any("questions" in p for p in phrases)


def test_a_prompt_to_repeat_never_clashes_with_the_other_constraints(shipped):
    for records in shipped.values():
        for r in records:
            ids = {c["id"] for c in r["constraints"]}
            if "combination:repeat_prompt" in ids:
                assert "punctuation:no_comma" not in ids, r["id"]  # the request itself may hold commas
