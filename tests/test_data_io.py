"""Readers for every format, kind detection, TRL conventions, metadata round trips and the JSONL writers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignkit.data.io import (
    detect_kind,
    iter_jsonl,
    parse_record,
    read_jsonl,
    read_records,
    sample_path,
    write_jsonl,
    write_records,
)
from alignkit.data.records import (
    JudgedExample,
    ListwiseExample,
    PairwiseExample,
    PromptExample,
    ScoredExample,
    SFTExample,
    UnpairedExample,
)
from alignkit.errors import DataError

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "id": "a"},
    {"prompt": CHAT, "chosen": "Paris.", "rejected": "Lyon.", "margin": 1.5, "id": "b"},
]
PAIR_RECORDS = [PairwiseExample("What is 2+2?", "4", "5"), PairwiseExample(CHAT, "Paris.", "Lyon.", 1.5)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- formats

def test_jsonl_reads_string_and_chat_prompts_and_keeps_extra_columns(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(r) for r in PAIRS])
    result = read_records(path, "pairwise")
    assert result.records == PAIR_RECORDS
    assert [r.metadata for r in result.records] == [{"id": "a"}, {"id": "b"}]
    assert result.kind == "pairwise" and result.skipped == []


def test_json_list_and_data_object(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(json.dumps(PAIRS))
    (tmp_path / "obj.json").write_text(json.dumps({"data": PAIRS}))
    assert read_records(tmp_path / "list.json").records == PAIR_RECORDS
    assert read_records(tmp_path / "obj.json").records == PAIR_RECORDS


def test_json_lines_under_a_json_name(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.json", [json.dumps(r) for r in PAIRS])
    assert read_records(path).records == PAIR_RECORDS


def test_parquet(tmp_path: Path) -> None:
    rows = [{"prompt": "Hi", "completions": ["a", "b", "c"], "scores": [1.0, 0.0, 0.5], "src": "x"},
            {"prompt": "Yo", "completions": ["d", "e"], "scores": [0.0, 2.0], "src": "y"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "l.parquet")
    result = read_records(tmp_path / "l.parquet")
    assert result.kind == "listwise"
    assert result.records == [ListwiseExample("Hi", ["a", "b", "c"], [1.0, 0.0, 0.5]),
                              ListwiseExample("Yo", ["d", "e"], [0.0, 2.0])]
    assert result.records[1].metadata == {"src": "y"}


def test_parquet_chat_prompts_drop_arrow_null_keys(tmp_path: Path) -> None:
    rows = [{"prompt": [{"role": "user", "content": "q", "name": "ann"}], "completion": "a"},
            {"prompt": [{"role": "user", "content": "r"}], "completion": "b"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    records = read_records(tmp_path / "s.parquet", "sft").records
    assert records[1].prompt == [{"role": "user", "content": "r"}]  # no "name": None filled in by Arrow


def test_csv_with_json_cells_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "completion", "label", "note"])
        w.writerow(["Say hi", "Hello!", "true", "n1"])
        w.writerow([json.dumps([{"role": "user", "content": "Say bye"}]), "Bye.", "0", "n2"])
    records = read_records(path).records
    assert records == [UnpairedExample("Say hi", "Hello!", True),
                       UnpairedExample([{"role": "user", "content": "Say bye"}], "Bye.", False)]
    assert records[0].metadata == {"note": "n1"}


def test_tsv(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.tsv", ["prompt\tcompletion", "Hi\tHello", "Bye\tSee you"])
    assert read_records(path).records == [SFTExample("Hi", "Hello"), SFTExample("Bye", "See you")]


def test_datasets_save_to_disk_and_dataset_dict(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_list([{"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}])
    ds.save_to_disk(str(tmp_path / "one"))
    assert read_records(tmp_path / "one").records == [PairwiseExample("Hi", "Hello", "Go away")]
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dict"))
    assert len(read_records(tmp_path / "dict", split="test")) == 1
    with pytest.raises(DataError, match="choose a split"):
        read_records(tmp_path / "dict")


def test_datasets_directory_of_data_files(tmp_path: Path) -> None:
    (tmp_path / "repo" / "data").mkdir(parents=True)
    write_lines(tmp_path / "repo" / "data" / "train.jsonl", [json.dumps(r) for r in PAIRS])
    assert read_records(tmp_path / "repo", split="train").records == PAIR_RECORDS


def test_in_memory_dataset_and_list_of_dicts() -> None:
    ds = datasets.Dataset.from_list([{"prompt": "Hi", "completion": "Hello"}])
    assert read_records(ds).records == [SFTExample("Hi", "Hello")]
    assert read_records([{"prompt": "Hi", "completion": "Hello"}]).records == [SFTExample("Hi", "Hello")]


def test_bundled_samples_are_valid() -> None:
    sizes = {kind: len(read_records(sample_path(kind), kind)) for kind in ("pairwise", "listwise", "unpaired",
                                                                          "sft")}
    assert sizes == {"pairwise": 16, "listwise": 8, "unpaired": 8, "sft": 8}


# ----------------------------------------------------------------------------------------------- TRL conventions

def test_messages_row_becomes_sft() -> None:
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                        {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"},
                        {"role": "assistant", "content": "A2"}]}
    record = parse_record(row, "sft")
    assert record == SFTExample(row["messages"][:4], "A2")


def test_messages_must_end_with_assistant() -> None:
    with pytest.raises(DataError, match="field 'messages': the last message must be the assistant"):
        parse_record({"messages": [{"role": "user", "content": "hi"}]}, "sft")


def test_pairwise_implicit_prompt_is_the_shared_prefix() -> None:
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
             {"role": "user", "content": "Name a color"}]
    row = {"chosen": turns + [{"role": "assistant", "content": "Blue"}],
           "rejected": turns + [{"role": "assistant", "content": "No"}]}
    assert parse_record(row, "pairwise") == PairwiseExample(turns, "Blue", "No")


def test_pairwise_implicit_prompt_must_differ_only_in_the_last_turn() -> None:
    row = {"chosen": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "x"}],
           "rejected": [{"role": "user", "content": "B"}, {"role": "assistant", "content": "y"}]}
    with pytest.raises(DataError, match="field 'chosen'"):
        parse_record(row, "pairwise")


def test_conversational_explicit_prompt_with_assistant_message_completions() -> None:
    row = {"prompt": [{"role": "user", "content": "Q"}],
           "chosen": [{"role": "assistant", "content": "good"}],
           "rejected": [{"role": "assistant", "content": "bad"}]}
    assert parse_record(row, "pairwise") == PairwiseExample(row["prompt"], "good", "bad")


def test_every_kind_parses() -> None:
    assert parse_record({"prompt": "p", "completion": "c", "attributes": {"h": 1, "v": 0.5}}, "scored") == \
        ScoredExample("p", "c", {"h": 1.0, "v": 0.5})
    assert parse_record({"prompt": "p", "completion": "c", "score": 2}, "scored") == \
        ScoredExample("p", "c", {"score": 2.0})
    assert parse_record({"prompt": "p", "completion": "c", "judgment": "ok", "score": 7}, "judged") == \
        JudgedExample("p", "c", "ok", 7.0)
    record = parse_record({"prompt": "p", "references": "r", "constraints": [{"type": "x"}], "id": 3}, "prompt")
    assert record == PromptExample("p", ["r"], [{"type": "x"}]) and record.metadata == {"id": 3}
    assert parse_record({"prompt": "p", "completion": "c", "label": 1}, "unpaired").label is True


@pytest.mark.parametrize(("columns", "kind"), [
    ({"prompt", "completions", "scores"}, "listwise"),
    ({"prompt", "chosen", "rejected", "completion"}, "pairwise"),
    ({"chosen", "rejected"}, "pairwise"),
    ({"prompt", "completion", "label"}, "unpaired"),
    ({"prompt", "completion", "judgment", "score"}, "judged"),
    ({"prompt", "completion", "attributes"}, "scored"),
    ({"prompt", "completion"}, "sft"),
    ({"messages"}, "sft"),
    ({"prompt", "references"}, "prompt"),
])
def test_kind_detection_rule(columns: set[str], kind: str) -> None:
    assert detect_kind(columns) == kind


def test_undetectable_kind_says_pass_kind() -> None:
    with pytest.raises(DataError, match="pass kind"):
        detect_kind({"body", "id"})  # (`text` alone is TRL's language-modeling SFT, issue #16.2)


# ----------------------------------------------------------------------------------------------- skipping

def test_skip_mode_counts_and_reports_every_bad_record(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [
        json.dumps(PAIRS[0]), "{not json", json.dumps({"prompt": "x", "chosen": "same", "rejected": "same"}),
        "", json.dumps({"prompt": "x", "chosen": "a"}), json.dumps(PAIRS[1])])
    result = read_records(path, "pairwise", on_bad_record="skip")
    assert result.records == PAIR_RECORDS
    assert [where for where, _ in result.skipped] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "field 'rejected': chosen is identical to rejected" in result.skipped[1][1]
    summary = result.summary()
    assert "2 pairwise records" in summary and "3 bad records skipped" in summary
    assert "missing field" in summary and "bad JSON" in summary


# ----------------------------------------------------------------------------------------------- writers

@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_written_records_read_back_identically_with_metadata(tmp_path: Path, name: str) -> None:
    records = [
        PairwiseExample(CHAT, "Paris.", "Lyon.", 0.5, {"id": 1, "source": "x", "chosen": "clash", "metadata": 2}),
        PairwiseExample("p", "a", "b"),
    ]
    write_records(tmp_path / name, records)
    back = read_records(tmp_path / name, "pairwise").records
    assert back == records
    assert [r.metadata for r in back] == [r.metadata for r in records]


@pytest.mark.parametrize("record", [
    SFTExample("p", "c", {"k": [1, 2]}), UnpairedExample([{"role": "user", "content": "u"}], "c", False),
    ListwiseExample("p", ["a", "b"], [0.25, -1.0]), ScoredExample("p", "c", {"h": 0.5}),
    JudgedExample("p", "c", "fine"), JudgedExample("p", "c", "fine", 3.0),
    PromptExample("p"), PromptExample("p", ["ref"], [{"kind": "max_words", "n": 5}], {"id": 7}),
])
def test_round_trip_every_kind(tmp_path: Path, record) -> None:
    write_records(tmp_path / "r.jsonl", [record])
    (back,) = read_records(tmp_path / "r.jsonl").records
    assert back == record and back.metadata == record.metadata


def test_append_mode(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_records(path, PAIR_RECORDS[:1])
    write_records(path, PAIR_RECORDS[1:], append=True)
    assert read_records(path).records == PAIR_RECORDS


def test_writer_validates_and_refuses_mixed_kinds(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="chosen is identical"):
        write_records(tmp_path / "x.jsonl", [PairwiseExample("p", "a", "a")])
    with pytest.raises(DataError, match="one kind per file"):
        write_records(tmp_path / "x.jsonl", [SFTExample("p", "a"), PairwiseExample("p", "a", "b")])
    with pytest.raises(DataError, match="jsonl"):
        write_records(tmp_path / "x.parquet", [SFTExample("p", "a")])


def test_jsonl_helpers(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    assert write_jsonl(path, [{"step": 1}, {"step": 2}]) == 2
    write_jsonl(path, [{"step": 3}], append=True)
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}, {"step": 3}]
    assert [r["step"] for r in iter_jsonl(path)] == [1, 2, 3]
    with pytest.raises(DataError, match="cannot be written"):
        write_jsonl(tmp_path / "n.jsonl", [{"x": float("nan")}])


def test_parquet_timestamps_in_metadata_are_written_as_strings(tmp_path: Path) -> None:
    import datetime

    when = datetime.datetime(2024, 5, 1, 12, 0)
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "completion": "c", "created": when}]), tmp_path / "t.parquet")
    records = read_records(tmp_path / "t.parquet").records
    assert records[0].metadata == {"created": when}
    write_records(tmp_path / "t.jsonl", records)
    assert read_records(tmp_path / "t.jsonl").records[0].metadata == {"created": str(when)}
