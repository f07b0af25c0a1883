"""Every validation error is a DataError naming file, line (or row) and field; malformed input never crashes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignkit.data.io import read_records
from alignkit.data.records import SFTExample
from alignkit.errors import DataError

GOOD = {
    "pairwise": {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
    "listwise": {"prompt": "Hi", "completions": ["a", "b"], "scores": [1.0, 0.0]},
    "unpaired": {"prompt": "Hi", "completion": "Hello!", "label": True},
    "sft": {"prompt": "Hi", "completion": "Hello!"},
    "scored": {"prompt": "Hi", "completion": "Hello!", "attributes": {"helpful": 0.9}},
    "judged": {"prompt": "Hi", "completion": "Hello!", "judgment": "Polite.", "score": 8},
    "prompt": {"prompt": "Hi", "references": ["Hello"]},
}

# (kind, changes to the good row (None deletes), field named in the error, words in the reason)
BAD_RECORDS = [
    ("pairwise", {"chosen": None}, "chosen", "missing field"),
    ("pairwise", {"prompt": None}, "prompt", "missing field"),
    ("pairwise", {"prompt": 3}, "prompt", "expected a string or a list of chat messages"),
    ("pairwise", {"prompt": ""}, "prompt", "empty prompt"),
    ("pairwise", {"prompt": []}, "prompt", "empty message list"),
    ("pairwise", {"prompt": [{"role": "wizard", "content": "x"}]}, "prompt[0].role", "expected one of"),
    ("pairwise", {"prompt": [{"role": "user", "content": 5}]}, "prompt[0].content", "expected a string"),
    ("pairwise", {"prompt": ["hello"]}, "prompt[0]", "expected a message object"),
    ("pairwise", {"chosen": 1}, "chosen", "expected a string"),
    ("pairwise", {"rejected": "   "}, "rejected", "empty completion"),
    ("pairwise", {"rejected": "Hello!"}, "rejected", "chosen is identical to rejected"),
    ("pairwise", {"margin": "big"}, "margin", "expected a number"),
    ("pairwise", {"margin": float("inf")}, "margin", "NaN or infinite"),
    ("sft", {"completion": ""}, "completion", "empty completion"),
    ("sft", {"completion": ["x"]}, "completion[0]", "expected a message object"),
    ("unpaired", {"label": "yes"}, "label", "expected true/false"),
    ("unpaired", {"label": 2}, "label", "expected true/false"),
    ("listwise", {"completions": ["only one"], "scores": [1.0]}, "completions", "at least 2"),
    ("listwise", {"scores": [1.0]}, "scores", "1 scores for 2 completions"),
    ("listwise", {"scores": [1.0, float("nan")]}, "scores[1]", "NaN or infinite"),
    ("listwise", {"scores": [1.0, True]}, "scores[1]", "expected a number, got a boolean"),
    ("listwise", {"completions": "a b"}, "completions", "expected a list"),
    ("listwise", {"completions": ["a", ""]}, "completions[1]", "empty completion"),
    ("scored", {"attributes": {"helpful": float("-inf")}}, "attributes.helpful", "NaN or infinite"),
    ("scored", {"attributes": []}, "attributes", "expected a non-empty object"),
    ("judged", {"judgment": None}, "judgment", "missing field"),
    ("judged", {"score": float("nan")}, "score", "NaN or infinite"),
    ("prompt", {"references": 4}, "references", "expected a list of strings"),
    ("prompt", {"constraints": ["x"]}, "constraints", "expected a list of objects"),
    ("sft", {"metadata": "x"}, "metadata", "expected an object"),
    # issue #14.3: a chat prompt that says nothing is as empty as "" ...
    ("pairwise", {"prompt": [{"role": "user", "content": " "}]}, "prompt", "empty prompt"),
    ("sft", {"prompt": None, "completion": None,
             "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "Hi"}]},
     "messages", "empty prompt"),
    ("prompt", {"prompt": None, "messages": [{"role": "system", "content": ""}, {"role": "user", "content": ""}]},
     "messages", "empty prompt"),
    # ... and one completion with two different scores contradicts itself, as chosen == rejected does
    ("listwise", {"completions": ["a", "b", "a"], "scores": [1.0, 0.0, 0.5]}, "completions[2]",
     "identical to completions[0] but scored differently (1 vs 0.5)"),
]


def bad_row(kind: str, changes: dict) -> dict:
    row = dict(GOOD[kind])
    for key, value in changes.items():
        if value is None:
            row.pop(key, None)
        else:
            row[key] = value
    return row


@pytest.mark.parametrize(("kind", "changes", "field", "reason"), BAD_RECORDS)
def test_validation_error_names_file_line_and_field(tmp_path: Path, kind: str, changes: dict, field: str,
                                                    reason: str) -> None:
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(GOOD[kind]), "", json.dumps(bad_row(kind, changes)), json.dumps(GOOD[kind])]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_records(path, kind)
    err = info.value
    assert (err.source, err.line, err.field) == (str(path), 3, field)
    assert str(err).startswith(f"{path}:3: field '{field}': ")
    assert reason in str(err)
    skipped = read_records(path, kind, on_bad_record="skip")
    assert len(skipped.records) == 2 and skipped.skipped == [(f"{path}:3", f"field '{field}': {err.reason}")]


@pytest.mark.parametrize(("content", "line", "reason"), [
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": \n', 2, "bad JSON"),
    (b'{"prompt": "a", "completion": "b"}\n["a list"]\n', 2, "expected a JSON object"),
    (b'{"prompt": "a", "completion": "b"}\n\n{"prompt": "\xff\xfe", "completion": "b"}\n', 3, "invalid UTF-8"),
])
def test_line_level_errors_name_the_line(tmp_path: Path, content: bytes, line: int, reason: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{path}:{line}: {reason}"):
        read_records(path, "sft")
    assert read_records(path, "sft", on_bad_record="skip").skipped[0][0] == f"{path}:{line}"


def test_row_index_for_json_and_csv(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps([GOOD["sft"], {"prompt": "x"}]))
    with pytest.raises(DataError, match=r"d\.json:1: field 'completion': missing field"):
        read_records(tmp_path / "d.json", "sft")
    (tmp_path / "d.csv").write_bytes(b"prompt,completion\nHi,Hello\nYo,\xff\n")
    with pytest.raises(DataError, match=r"d\.csv:1: field 'completion': invalid UTF-8"):
        read_records(tmp_path / "d.csv", "sft")


def test_bad_json_document_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('[\n{"prompt": "a",\n "completion": }\n]')
    with pytest.raises(DataError, match=r"d\.json:3: bad JSON"):
        read_records(tmp_path / "d.json", "sft")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown file type"):
        read_records(tmp_path / "x.txt")
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read Parquet"):
        read_records(tmp_path / "x.parquet")


# ----------------------------------------------------------------------------------------------- fuzzing

FIELDS = ["prompt", "chosen", "rejected", "completion", "completions", "scores", "label", "margin", "messages",
          "attributes", "judgment", "score", "references", "constraints", "metadata"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["role", "content", "x"]) | st.text(max_size=3), children, max_size=3),
    max_leaves=8)
rows = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), json_values, max_size=6)
lines = st.one_of(
    rows.map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=40),
    st.text(max_size=40).map(str.encode),
    st.sampled_from([b"[[[[[[[[", b"NaN", b'{"prompt": "a"', b"\xef\xbb\xbf{}", b"1e999999", b"9" * 5000,
                     b"[" * 5000 + b"]" * 5000]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.lists(lines, max_size=6), kind=st.sampled_from([None, "pairwise", "listwise", "unpaired",
                                                                    "sft", "scored", "judged", "prompt"]))
def test_malformed_jsonl_only_ever_raises_data_error(tmp_path: Path, content: list[bytes], kind: str | None) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(content))
    try:
        read_records(path, kind)
    except DataError:
        pass
    try:
        result = read_records(path, kind, on_bad_record="skip")
    except DataError as e:  # only an input without a single row may escape skip mode (issue #14.4)
        assert "empty input" in str(e) and not path.read_bytes().strip()
    else:
        assert len(result.records) + len(result.skipped) <= path.read_bytes().count(b"\n") + 1
        assert all(where.startswith(f"{path}:") for where, _ in result.skipped)


# ----------------------------------------------------------------------------------------------- issue #14: nothing
# lost or changed without a word


def test_duplicate_key_in_jsonl_is_an_error_naming_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}\n'
                    '{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "chosen": "Bye."}\n'
                    '{"prompt": [{"role": "user", "content": "Hi", "role": "system"}], "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: field 'chosen': duplicate key") as info:
        read_records(path, "pairwise")
    assert info.value.line == 2
    result = read_records(path, "pairwise", on_bad_record="skip")
    assert len(result.records) == 1
    assert [where for where, _ in result.skipped] == [f"{path}:2", f"{path}:3"]
    assert result.skipped[1][1].startswith("field 'prompt[0].role': duplicate key")


def test_duplicate_key_in_a_json_document_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[{"prompt": "Hi", "completion": "a"}, {"prompt": "Hi", "completion": "a", "completion": "b"}]')
    with pytest.raises(DataError, match=rf"^{path}:1: field 'completion': duplicate key"):
        read_records(path, "sft")
    (tmp_path / "w.json").write_text('{"data": [{"prompt": "Hi", "completion": "a"}], "data": []}')
    with pytest.raises(DataError, match="field 'data': duplicate key"):
        read_records(tmp_path / "w.json", "sft")


def test_duplicate_key_inside_a_csv_json_cell(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["prompt", "completion"], ['[{"role": "user", "content": "a", "content": "b"}]', "x"]])
    with pytest.raises(DataError, match=r"d\.csv:0: field 'prompt\[0\]\.content': duplicate key"):
        read_records(path, "sft")


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, newline="")
    return path


def test_csv_stray_quote_no_longer_swallows_the_rows_after_it(tmp_path: Path) -> None:
    # Old reading: one record whose prompt is 'Oops,"b\\nc,d\\ne,f\\n' (3 rows swallowed) or a cell-count error
    # counted once; the rows after the stray quote were never seen or counted.
    path = _csv(tmp_path / "s.csv", 'prompt,completion\nHi,Hello\n"Oops,bad\nYo,Hey\nSup,Not much\n')
    with pytest.raises(DataError, match=rf"^{path}:1: bad CSV quoting .* physical line 3 "):
        read_records(path, "sft")
    result = read_records(path, "sft", on_bad_record="skip")
    assert result.records == [SFTExample("Hi", "Hello"), SFTExample("Yo", "Hey"), SFTExample("Sup", "Not much")]
    assert [where for where, _ in result.skipped] == [f"{path}:1"]


def test_csv_quote_closed_by_a_later_quote_is_an_error_too(tmp_path: Path) -> None:
    path = _csv(tmp_path / "s.csv", 'prompt,completion\n"Oops,bad\nYo,Hey\n"Sup",Not much\nA,B\n')
    result = read_records(path, "sft", on_bad_record="skip")
    assert result.records == [SFTExample("Yo", "Hey"), SFTExample("Sup", "Not much"), SFTExample("A", "B")]
    assert [where for where, _ in result.skipped] == [f"{path}:0"]


def test_csv_stray_quote_closed_at_the_start_of_a_later_field_is_an_error(tmp_path: Path) -> None:
    # The stray quote closes at the opening quote of '",abc"' and the cell count comes out right: old reading gave
    # one record ("Hi,Hello\nx,", 'abc"') for two rows, without a word.
    path = _csv(tmp_path / "s.csv", 'prompt,completion\n"Hi,Hello\nx,",abc"\n')
    with pytest.raises(DataError, match=rf"^{path}:0: bad CSV quoting \(a quote inside an unquoted field\)"):
        read_records(path, "sft")
    assert read_records(path, "sft", on_bad_record="skip").records == [SFTExample("x", ",abc")]


def test_csv_quote_inside_an_unquoted_field_is_an_error(tmp_path: Path) -> None:
    path = _csv(tmp_path / "s.csv", 'prompt,completion\nThe 5" screen?,Nice\n"The 5"" screen?",Nice\n')
    with pytest.raises(DataError, match=r"s\.csv:0: bad CSV quoting .* physical line 2; "):
        read_records(path, "sft")
    assert read_records(path, "sft", on_bad_record="skip").records == [SFTExample('The 5" screen?', "Nice")]


def test_csv_record_over_several_lines_with_too_few_cells_names_its_lines(tmp_path: Path) -> None:
    path = _csv(tmp_path / "s.csv", 'prompt,completion\n"Oops,bad\nYo,Hey"\nA,B\n')
    with pytest.raises(DataError, match=r"expected 2 cells, found 1 \(one record over physical lines 2-3"):
        read_records(path, "sft")


def test_csv_multi_line_quoted_cell_is_still_one_record(tmp_path: Path) -> None:
    path = _csv(tmp_path / "m.csv", 'prompt,completion\nHi,"line one\nline ""two"""\r\nYo,Hey\n')
    assert read_records(path, "sft").records == [SFTExample("Hi", 'line one\nline "two"'), SFTExample("Yo", "Hey")]


def test_csv_message_list_without_role_is_an_error_not_a_string_prompt(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["prompt", "completion"], [json.dumps([{"content": "Say hi"}]), "Hello"]])
    with pytest.raises(DataError, match=r"c\.csv:0: field 'prompt\[0\]\.role': expected one of"):
        read_records(path, "sft")


def test_listwise_repeated_completion_with_the_same_score_is_a_tie() -> None:
    (record,) = read_records([{"prompt": "p", "completions": ["a", "b", "a"], "scores": [1, 0, 1]}]).records
    assert record.completions == ["a", "b", "a"]


def _zero_row_parquet(path: Path) -> None:
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "completion": pa.array([], pa.string())}), path)


EMPTY_INPUTS = {
    "empty.jsonl": lambda p: p.write_bytes(b""),
    "blank.jsonl": lambda p: p.write_bytes(b"\n  \n"),
    "header.csv": lambda p: p.write_text("prompt,completion\n"),
    "empty.csv": lambda p: p.write_bytes(b""),
    "zero.parquet": _zero_row_parquet,
    "list.json": lambda p: p.write_text("[]"),
    "obj.json": lambda p: p.write_text('{"data": []}'),
}


@pytest.mark.parametrize("name", sorted(EMPTY_INPUTS))
@pytest.mark.parametrize("kind", [None, "sft"])
def test_empty_input_is_an_error_unless_allowed(tmp_path: Path, name: str, kind: str | None) -> None:
    path = tmp_path / name
    EMPTY_INPUTS[name](path)
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match=rf"^{path}: empty input: no records found.*--allow-empty"):
            read_records(path, kind, on_bad_record=policy)
    result = read_records(path, kind, allow_empty=True)
    assert result.records == [] and result.skipped == [] and result.kind == (kind or "unknown")


def test_a_file_of_bad_rows_is_not_empty_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": ""}\n')
    result = read_records(path, "sft", on_bad_record="skip")
    assert result.records == [] and len(result.skipped) == 1


def test_detected_kind_is_not_silently_imposed_on_rows_of_another_kind(tmp_path: Path) -> None:
    # The first row lost its label: detection says sft, and the labelled rows after it would have trained as SFT
    # with their label tucked into metadata.
    path = tmp_path / "kto.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d", "label": true}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: this row's columns .* make it unpaired, but the data kind "
                                        "was detected as sft"):
        read_records(path)
    assert len(read_records(path, "unpaired", on_bad_record="skip")) == 1  # with the kind given: one bad row
