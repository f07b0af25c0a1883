"""`alignkit data build --from corrections`: (answer, edited) rows → DDPO pairs (spec wave2_feedback_safety.md §1.1)."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.data.build import CorrectionsBuilder, items_from_corrections, load_corrections
from alignkit.errors import DataError


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_builds_ddpo_pairs(tmp_path) -> None:
    src = tmp_path / "edits.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Describe the kitchen.", "answer": "There are three mugs on the counter.",
         "edited": "There are two mugs on the counter.", "rejected_spans": [[10, 15]], "chosen_spans": [[10, 13]],
         "critique": "Only two mugs are visible."},
        {"prompt": "Sky?", "original": "The sky is green.", "corrected": "The sky is blue."},
        {"prompt": "Same?", "answer": "Unchanged answer.", "edited": "Unchanged answer."},
    ]) + "\n")
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "build", "--from", "corrections", "--corrections", str(src), "--out", str(out)]) == 0
    rows = rows_of(out)
    assert len(rows) == 2  # the unedited row is dropped as identical
    first, second = rows
    first, second = {**first, **first.pop("metadata")}, {**second, **second.pop("metadata")}
    # Orientation: chosen is the edit, rejected the original; given spans are kept, the critique travels along.
    assert first["chosen"] == "There are two mugs on the counter." and first["rejected"].startswith("There are three")
    assert first["chosen_spans"] == [[10, 13]] and first["diff_mode"] == "spans"
    assert first["critique"] == "Only two mugs are visible." and first["feedback_source"] == "human_correction"
    assert second["diff_mode"] == "token_diff" and "chosen_spans" not in second
    assert second["edit_fraction"] == pytest.approx(2 / 8)
    # Resumable: a rerun writes nothing new.
    assert main(["data", "build", "--from", "corrections", "--corrections", str(src), "--out", str(out)]) == 0
    assert len(rows_of(out)) == 2


def test_max_edit_fraction_drops_rewrites() -> None:
    items = items_from_corrections([
        {"prompt": "p", "answer": "a b c d e f", "edited": "a b c d e g"},
        {"prompt": "p", "answer": "one two three", "edited": "completely different words here"},
    ])
    outcomes = CorrectionsBuilder(max_edit_fraction=0.5).build(items)
    assert len(outcomes[0].records) == 1
    assert outcomes[1].dropped == "not_a_correction"


def test_bad_rows_name_file_line_field(tmp_path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"prompt": "p", "answer": "x"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1.*edited"):
        load_corrections(str(src))
    src.write_text(json.dumps({"prompt": "p", "answer": "abc", "edited": "abd", "chosen_spans": [[2, 9]]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1.*chosen_spans"):
        load_corrections(str(src))
