"""The train and test splits of the constraint suite are disjoint: no base task, topic, prompt, template id or
template text in common, and no near-duplicate prompt pair (issue #15 item 1). The check itself catches each kind
of leak."""

from __future__ import annotations

import copy

import pytest

from alignkit.data.suite import generate_suite, suite_records
from alignkit.data.suite_gen.overlap import (
    NEAR_DUPLICATE_JACCARD,
    check_disjoint,
    max_jaccard,
    normalize,
    shingles,
)
from alignkit.data.suite_gen.wording import TEMPLATES
from alignkit.errors import DataError


@pytest.fixture(scope="module")
def shipped() -> tuple[list[dict], list[dict]]:
    return suite_records("train"), suite_records("test")


def test_shipped_splits_share_nothing(shipped):
    report = check_disjoint(*shipped)
    for key in ("base_tasks", "topics", "prompts", "normalized_prompts", "template_ids", "template_texts"):
        assert report[key] == [], key
    assert report["max_jaccard"] < NEAR_DUPLICATE_JACCARD and not report["near_duplicates"]


def test_splits_of_other_seeds_share_nothing():
    suite = generate_suite(seed=7, sizes={"train": 300, "test": 100})
    check_disjoint(suite["train"], suite["test"])


def test_train_and_test_wording_templates_are_disjoint_sets():
    train = [t for by in TEMPLATES.values() for t in by["train"]]
    test = [t for by in TEMPLATES.values() for t in by["test"]]
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)
    assert all(len(by["train"]) >= 3 and len(by["test"]) >= 2 for by in TEMPLATES.values())


def test_normalisation_and_jaccard_on_hand_computed_cases():
    assert normalize("Use at least 3 words, please!") == normalize("use AT LEAST 12 words please")
    assert shingles("a b c d") == {"a b c", "b c d"} and shingles("a b") == {"a b"}
    # {abc, bcd} vs {abc, bce}: one shared of three distinct -> 1/3
    assert max_jaccard(["x y z w", "a b c d"], ["a b c e"]) == (pytest.approx(1 / 3), 1, 0)
    assert max_jaccard(["a b c"], ["d e f"]) == (0.0, -1, -1)


def _leak(train: list[dict], test: list[dict], edit) -> list[dict]:
    test = copy.deepcopy(test)
    edit(test[0], train[0])
    return test


@pytest.mark.parametrize("edit, message", [
    (lambda te, tr: te.update(base_task=tr["base_task"]), "base_tasks"),
    (lambda te, tr: te.update(topic=tr["topic"]), "topics"),
    (lambda te, tr: te.update(prompt=tr["prompt"]), "prompts"),
    (lambda te, tr: te.update(prompt=tr["prompt"].upper().replace(".", "!", 1)), "normalized_prompts"),
    (lambda te, tr: te.update(templates=tr["templates"]), "template_ids"),
    # a near copy: the train prompt with one sentence added
    (lambda te, tr: te.update(prompt=tr["prompt"] + " Also be brief and kind to the reader."), "near-duplicate"),
])
def test_check_disjoint_catches_each_kind_of_leak(shipped, edit, message):
    train, test = shipped[0][:200], shipped[1][:50]
    with pytest.raises(DataError, match=message):
        check_disjoint(train, _leak(train, test, edit))


def test_the_first_suites_test_topics_never_reach_the_new_train_split(shipped):
    # e.g. test-v1's "Write a short note to a neighbour about a lost cat." -> topic "a lost cat"
    from alignkit.data.suite_gen.tasks import TOPICS, V1_TEST_TOPICS

    assert set(V1_TEST_TOPICS) <= {t.text for t in TOPICS}
    train, test = shipped
    assert not set(V1_TEST_TOPICS) & {r["topic"] for r in train}
    assert set(V1_TEST_TOPICS) <= {r["topic"] for r in test}
    assert not any("lost cat" in r["base_task"] or "sleepy owl" in r["base_task"] for r in train)
