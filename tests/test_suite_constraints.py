"""The constraint prompt suite: deterministic, disjoint splits, and every shipped constraint is a valid IFEval check."""

from __future__ import annotations

import json

import pytest
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from alignkit.data.records import PromptExample
from alignkit.data.suite import (
    BASE_TASKS,
    CONSTRAINT_KINDS,
    combination_key,
    conflicts,
    generate_suite,
    load_suite,
    render_prompt,
    suite_records,
    write_suite,
)
from alignkit.errors import DataError
from alignkit.rewards.verifiers import install_offline_nltk


def test_shipped_suite_has_the_default_sizes_and_record_layout():
    train, test = suite_records("train"), suite_records("test")
    assert (len(train), len(test)) == (256, 128)
    for r in train + test:
        assert set(r) == {"id", "prompt", "constraints", "base_task"}
        assert 1 <= len(r["constraints"]) <= 2
        assert r["prompt"].startswith(r["base_task"])
        assert r["prompt"] == render_prompt(r["base_task"], r["constraints"])
    assert len({r["id"] for r in train + test}) == 384


def test_shipped_suite_is_the_seeded_generator_output():
    assert generate_suite(seed=0) == {"train": suite_records("train"), "test": suite_records("test")}
    assert generate_suite(seed=1) != generate_suite(seed=0)


def test_splits_share_no_base_task_and_no_constraint_combination():
    for suite in (generate_suite(seed=0), generate_suite(seed=3, sizes={"train": 100, "test": 60})):
        train, test = suite["train"], suite["test"]
        assert not {r["base_task"] for r in train} & {r["base_task"] for r in test}
        assert not ({combination_key(r["constraints"]) for r in train}
                    & {combination_key(r["constraints"]) for r in test})
        for split in (train, test):
            pairs = [(r["base_task"], combination_key(r["constraints"])) for r in split]
            assert len(pairs) == len(set(pairs))


def test_combination_key_ignores_order_but_not_kwargs():
    a = {"id": "punctuation:no_comma", "kwargs": {}}
    b = {"id": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 2}}
    b3 = {"id": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 3}}
    assert combination_key([a, b]) == combination_key([b, a])
    assert combination_key([a, b]) != combination_key([a, b3])


def test_suite_covers_the_constraint_kinds_and_the_task_pool():
    assert len(BASE_TASKS) >= 60 and len(CONSTRAINT_KINDS) == 16
    ids = {c["id"] for r in suite_records("train") for c in r["constraints"]}
    assert ids == {k.id for k in CONSTRAINT_KINDS}
    used = {r["base_task"] for split in ("train", "test") for r in suite_records(split)}
    assert used == {t.text for t in BASE_TASKS}


def test_no_prompt_holds_conflicting_constraints():
    for split in ("train", "test"):
        for r in suite_records(split):
            if len(r["constraints"]) == 2:
                assert not conflicts(r["constraints"][0]["id"], r["constraints"][1]["id"]), r["id"]


def test_every_shipped_constraint_is_accepted_by_the_ifeval_verifier():
    install_offline_nltk()  # the sentence counter needs punkt data, which is not shipped
    for split in ("train", "test"):
        for r in suite_records(split):
            for c in r["constraints"]:
                assert c["id"] in INSTRUCTION_DICT, c["id"]
                checker = INSTRUCTION_DICT[c["id"]](c["id"])
                checker.build_description(**c["kwargs"])
                args = checker.get_instruction_args() or {}
                for key, value in c["kwargs"].items():
                    got = args[key]
                    assert (sorted(got) if isinstance(value, list) else got) == value, (r["id"], key)
                assert isinstance(checker.check_following("A plain answer."), bool)


def test_constraints_are_satisfiable_by_a_crafted_answer():
    # One hand-made answer per kind that the verifier accepts: the constraints are checkable, not vacuous.
    answers = {
        "punctuation:no_comma": "No commas here.",
        "change_case:english_lowercase": "this is all lower case english text about the garden.",
        "change_case:english_capital": "THIS IS ALL UPPER CASE ENGLISH TEXT ABOUT THE GARDEN.",
        "startend:quotation": '"Wrapped."',
        "detectable_format:json_format": '{"answer": 1}',
        "detectable_format:title": "<<A title>>\nBody.",
    }
    for cid, answer in answers.items():
        checker = INSTRUCTION_DICT[cid](cid)
        checker.build_description()
        assert checker.check_following(answer), cid


def test_load_suite_gives_prompt_examples_with_constraints_and_ids():
    examples = load_suite("test")
    assert len(examples) == 128 and all(isinstance(e, PromptExample) for e in examples)
    first = examples[0]
    assert first.constraints and first.metadata["id"] == "test-0000" and first.metadata["split"] == "test"
    with pytest.raises(DataError, match="unknown suite split"):
        load_suite("validation")


def test_write_suite_round_trips(tmp_path):
    paths = write_suite(tmp_path, seed=5, sizes={"train": 10, "test": 5})
    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert rows == generate_suite(seed=5, sizes={"train": 10, "test": 5})["train"]


def test_render_prompt_rejects_unknown_constraint():
    with pytest.raises(DataError, match="unknown constraint id"):
        render_prompt("Say hi.", [{"id": "nope:nothing", "kwargs": {}}])


def test_csr_reward_scores_every_shipped_prompt():
    from alignkit.rewards.registry import load_reward

    examples = load_suite("train") + load_suite("test")
    reward = load_reward("csr")
    result = reward(examples, ["<<Title>>\n* one\n* two\nP.S. done"] * len(examples))
    assert len(result.scores) == len(examples)
    assert all(0.0 <= s <= 1.0 for s in result.scores)
    assert result.info.get("without_constraints", 0) == 0
