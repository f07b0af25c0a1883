"""The studio's library: finding runs inside the root only, joining samples, word diffs, tasks in SQLite,
agreement and exports that the training readers accept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from alignkit.data.io import read_records
from alignkit.errors import DataError
from alignkit.studio.diff import word_diff
from alignkit.studio.export import export_task, records
from alignkit.studio.runs import find_runs, open_run, resolve_run
from alignkit.studio.samples import filter_rows, join_samples
from alignkit.studio.store import TaskStore
from alignkit.studio.tasks import (
    agreement,
    answer,
    cohen_kappa,
    display_order,
    next_item,
    progress,
    task_from_runs,
)
from studio_fixture import make_runs


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return make_runs(tmp_path / "runs")


def test_runs_are_found_with_their_kind_and_nothing_outside_the_root_opens(root: Path, tmp_path: Path) -> None:
    runs = {r.name: r.kind for r in find_runs(root)}
    assert runs == {"base": "eval", "tuned": "eval", "train/dpo": "train"}
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "eval.json").write_text("{}")
    (root / "link").symlink_to(tmp_path / "secret")
    for bad in ("../secret", "/etc", "base/../../secret", "link", "", "base\x00"):
        with pytest.raises(DataError):
            resolve_run(root, bad)
    assert resolve_run(root, "train/dpo") == (root / "train" / "dpo").resolve()


def test_samples_join_by_prompt_id_with_constraints_checked_from_the_runs_prompt_file(root: Path) -> None:
    rows = join_samples([open_run(root, "base"), open_run(root, "tuned")])
    assert [r.key for r in rows] == ["p0", "p1", "p2", "p3", "p4", "p5"]
    p0 = rows[0]
    assert [c.passed for c in p0.cells] == [False, True]  # "The Cat is soft." is not lowercase
    p3 = rows[3]
    assert [[c["strict"] for c in cell.constraints] for cell in p3.cells] == [[True, False], [True, True]]
    assert [r.key for r in filter_rows(rows, changed_only=True)] == ["p0", "p1", "p2", "p3", "p5"]
    assert [r.key for r in filter_rows(rows, constraint="punctuation")] == ["p1", "p3", "p4"]
    assert [r.key for r in filter_rows(rows, constraint="punctuation:no_comma", status="failed")] == ["p1", "p3", "p4"]
    assert [r.key for r in filter_rows(rows, constraint="punctuation:no_comma", status="passed")] == ["p1", "p3"]


def test_word_diff_marks_changed_words_and_rebuilds_both_texts() -> None:
    a, b = "the cat sat on the mat", "the dog sat on a mat"
    d = word_diff(a, b)
    assert d == [("equal", "the "), ("delete", "cat "), ("insert", "dog "), ("equal", "sat on "), ("delete", "the "),
                 ("insert", "a "), ("equal", "mat")]
    assert word_diff("A lake is calm.", "The river runs fast.") == [("delete", "A lake is calm."),
                                                                   ("insert", "The river runs fast.")]
    assert "".join(t for op, t in word_diff("  x y", "x  z") if op != "delete") == "x  z"
    assert "".join(t for op, t in d if op != "insert") == a
    assert "".join(t for op, t in d if op != "delete") == b


def test_cohen_kappa_worked_example() -> None:
    # Cohen's κ, the textbook 2x2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no of 50 items:
    # p_o = 35/50 = 0.7; p_e = 0.5·0.6 + 0.5·0.4 = 0.5; κ = (0.7 − 0.5)/(1 − 0.5) = 0.4.
    x = ["y"] * 25 + ["n"] * 25
    y = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    raw, kappa = cohen_kappa(x, y)
    assert raw == pytest.approx(0.7) and kappa == pytest.approx(0.4)
    assert cohen_kappa(["a", "a"], ["a", "a"]) == (1.0, None)  # p_e = 1: κ undefined, not 0/0


def _task(root: Path, tmp_path: Path) -> TaskStore:
    store, counts = task_from_runs(tmp_path / "t.sqlite", [open_run(root, "base"), open_run(root, "tuned")], seed=3)
    assert counts == {"items": 5, "identical": 1}  # p4 is the same in both runs
    return store


def _press(store: TaskStore, who: str, item_id: int, want_source: str | None, special: str = "",
           critique: str = "") -> None:
    """Answer as an annotator who wants the completion from `want_source` (letters depend on the shown order)."""
    item = store.item(item_id)
    if special:
        answer(store, who, item_id, special, critique)
        return
    order = display_order(store.meta(), who, item)
    letter = "AB"[[item.completions[i]["source"] for i in order].index(want_source)]
    answer(store, who, item_id, letter, critique)


def test_task_store_is_wal_durable_and_resumes_per_annotator(root: Path, tmp_path: Path) -> None:
    store = _task(root, tmp_path)
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    first = next_item(store, "ann")
    _press(store, "ann", first.item_id, "tuned")
    _press(store, "ann", next_item(store, "ann").item_id, None, "skip")
    reopened = TaskStore(store.path)  # a new process would see the same rows
    assert next_item(reopened, "ann").key == "p2"
    assert next_item(reopened, "bob").key == "p0"
    assert [(p.annotator, p.answered, p.skipped, p.total) for p in progress(reopened)] == [("ann", 2, 1, 5)]
    lab = reopened.labels("ann")[0]
    assert reopened.item(lab.item_id).completions[int(lab.choice)]["source"] == "tuned"
    assert sorted(lab.display_order) == [0, 1]
    with pytest.raises(DataError):
        answer(store, "ann", first.item_id, "C")
    with pytest.raises(DataError):
        answer(store, "../x", first.item_id, "A")
    with pytest.raises(DataError):
        TaskStore.create(store.path, {}, [("k", "p", [], {})])  # never overwritten


def test_display_order_is_seeded_per_annotator_and_recorded(root: Path, tmp_path: Path) -> None:
    store = _task(root, tmp_path)
    items = store.items()
    meta = store.meta()
    orders = {who: [tuple(display_order(meta, who, it)) for it in items] for who in ("ann", "bob", "cy")}
    assert orders["ann"] == [tuple(display_order(meta, "ann", it)) for it in items]  # stable on reload
    assert len({o for v in orders.values() for o in v}) == 2  # both orders occur


def test_agreement_and_exports(root: Path, tmp_path: Path) -> None:
    store = _task(root, tmp_path)
    ids = [it.item_id for it in store.items()]
    for i in ids:
        _press(store, "ann", i, "tuned", critique="too long" if i == ids[0] else "")
    for i in ids[:4]:
        _press(store, "bob", i, "tuned")
    _press(store, "bob", ids[4], None, "both_bad")
    (ag,) = agreement(store)
    assert (ag.a, ag.b, ag.n, ag.raw) == ("ann", "bob", 5, pytest.approx(0.8))
    # ann: 5 × tuned; bob: 4 × tuned, 1 × both_bad → p_e = 1·0.8 = 0.8, κ = (0.8 − 0.8)/(1 − 0.8) = 0.
    assert ag.kappa == pytest.approx(0.0)
    recs, counts = records(store, "pairwise")
    assert counts["items"] == 4 and counts["disputed"] == 1  # the last item: one vote each way
    assert all(r.metadata["chosen_source"] == "tuned" for r in recs)
    assert recs[0].chosen == "the cat is soft and warm." and recs[0].rejected == "The Cat is soft."
    each, _ = records(store, "pairwise", votes="each")
    assert len(each) == 9
    out = tmp_path / "pairs.jsonl"
    export_task(store, "pairwise", out)
    assert len(read_records(out, kind="pairwise").records) == 4
    with pytest.raises(DataError, match="--overwrite"):
        export_task(store, "pairwise", out)
    export_task(store, "unpaired", tmp_path / "kto.jsonl")
    un = read_records(tmp_path / "kto.jsonl", kind="unpaired").records
    assert [r.label for r in un].count(True) == 4 and len(un) == 8
    export_task(store, "judged", tmp_path / "cut.jsonl")
    judged = read_records(tmp_path / "cut.jsonl", kind="judged").records
    assert sorted((r.completion, r.judgment, r.score) for r in judged) == [
        ("The Cat is soft.", "too long", 0.0), ("the cat is soft and warm.", "The annotator preferred this answer.", 10.0)]
    export_task(store, "feedback", tmp_path / "fb.jsonl")
    (fb,) = [json.loads(line) for line in (tmp_path / "fb.jsonl").read_text().splitlines()]
    assert fb["feedback"] == "too long" and fb["completion"] == "The Cat is soft." and fb["preferred"] is False
