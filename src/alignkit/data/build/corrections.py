"""The `corrections` builder: (answer, edited answer) rows → pairwise records for DDPO (spec wave2_feedback_safety.md
§1.1, §1.7; RLHF-V, Yu et al. 2024).

A correction is a model answer and the same answer after a person (or a critique-and-refine step, or the studio)
fixed what was wrong. The pair (edited ≻ original) differs only where it was corrected, which is what DDPO
(`objective: ddpo`) weights. Input rows (JSONL), TRL column names where they exist:

  prompt | messages           the request (string or chat messages)
  answer                      the original answer; also read as `original`, `response`, `completion`, `rejected`
  edited                      the corrected answer; also read as `corrected`, `correction`, `edited_answer`, `chosen`
  rejected_spans/chosen_spans optional `[[start, end], ...]` character offsets of the edited text in each side
  critique | feedback         optional; kept in metadata (the studio's label critiques are rows of this shape)
  id                          optional; resume key (else a hash of prompt, answer and edit)

Output: `{"prompt", "chosen": edited, "rejected": answer, "chosen_spans"?, "rejected_spans"?, "diff_mode",
"feedback_source", ...}`. `diff_mode` is "spans" when spans were given and "token_diff" otherwise: training then
diffs the policy's own tokens by the §1.3 rule. `edit_fraction` is the share of the words the edit touched
(word-level diff, for filtering and reports); rows with no edit are dropped (`identical`), and with
`max_edit_fraction` set, rows that rewrite more than that share are dropped (`not_a_correction`, spec §1.7).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from alignkit.data.build.common import BuildItem
from alignkit.data.build.runner import Outcome
from alignkit.data.io import parse_record, read_jsonl
from alignkit.data.records import PairwiseExample
from alignkit.data.token_diff import check_spans, word_diff_spans
from alignkit.errors import ConfigError, DataError

ANSWER_COLUMNS = ("answer", "original", "response", "completion", "rejected")
EDITED_COLUMNS = ("edited", "corrected", "correction", "edited_answer", "chosen")


def _pick(row: dict[str, Any], names: Sequence[str], what: str, source: str, line: int) -> tuple[str, Any]:
    found = [n for n in names if row.get(n) is not None]
    if not found:
        raise DataError(f"missing the {what} (one of {', '.join(names)})", source=source, line=line, field=names[0])
    if len(found) > 1:
        raise DataError(f"give the {what} once, found columns {found}", source=source, line=line, field=found[1])
    return found[0], row[found[0]]


def correction_item(row: dict[str, Any], source: str, line: int) -> BuildItem:
    """Validate one correction row (errors name FILE:LINE:field) and wrap it as a build item."""
    if not isinstance(row, dict):
        raise DataError("expected an object", source=source, line=line)
    a_col, answer = _pick(row, ANSWER_COLUMNS, "original answer", source, line)
    e_col, edited = _pick(row, EDITED_COLUMNS, "edited answer", source, line)
    base = {k: v for k, v in row.items() if k not in (a_col, e_col)}
    record = parse_record({**base, "chosen": edited, "rejected": answer}, "pairwise", source=source, line=line) \
        if answer != edited else None
    spans = {}
    for side, text in (("chosen", edited), ("rejected", answer)):
        if row.get(f"{side}_spans") is not None:
            try:
                spans[f"{side}_spans"] = [list(s) for s in check_spans(row[f"{side}_spans"], text, f"{side}_spans")]
            except ValueError as e:
                raise DataError(str(e).split(": ", 1)[-1], source=source, line=line, field=f"{side}_spans") from None
    prompt = record.prompt if record is not None else row.get("prompt") or row.get("messages")
    ident = row.get("id")
    key = f"id:{ident}" if ident not in (None, "") else "sha:" + hashlib.sha256(
        json.dumps([prompt, answer, edited], sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return BuildItem(key, prompt, {"record": record, "answer": answer, "edited": edited, "spans": spans,
                                   "where": f"{source}:{line}"})


def load_corrections(path: str) -> list[BuildItem]:
    """Correction rows from a JSONL file as build items (see the module docstring for the columns)."""
    return [correction_item(row, path, n) for n, row in enumerate(read_jsonl(path), 1)]


def items_from_corrections(rows: Sequence[dict[str, Any]]) -> list[BuildItem]:
    return [correction_item(dict(r), "<corrections>", i + 1) for i, r in enumerate(rows)]


class CorrectionsBuilder:
    """(answer, edited) → (chosen = edited, rejected = answer) pairs with DDPO provenance (module docstring)."""

    name = "corrections"

    def __init__(self, feedback_source: str = "human_correction", max_edit_fraction: float | None = None) -> None:
        if max_edit_fraction is not None and not 0 < max_edit_fraction <= 1:
            raise ConfigError(f"max_edit_fraction must lie in (0, 1], got {max_edit_fraction}")
        self.feedback_source, self.max_edit_fraction = feedback_source, max_edit_fraction

    def settings(self) -> dict[str, Any]:
        return {"feedback_source": self.feedback_source, "max_edit_fraction": self.max_edit_fraction}

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        return [self._one(item) for item in items]

    def _one(self, item: BuildItem) -> Outcome:
        src = item.source
        assert isinstance(src, dict)
        record = src["record"]
        if record is None:
            return Outcome(item.key, dropped="identical")
        chosen_w, rejected_w = word_diff_spans(record.rejected, record.chosen)
        n_words = len(record.chosen.split()) + len(record.rejected.split())
        touched = sum(len(record.chosen[s:e].split()) for s, e in chosen_w) + sum(
            len(record.rejected[s:e].split()) for s, e in rejected_w)
        fraction = touched / max(n_words, 1)
        if self.max_edit_fraction is not None and fraction > self.max_edit_fraction:
            return Outcome(item.key, dropped="not_a_correction")
        meta = {**record.metadata, **src["spans"], "builder": self.name,
                "diff_mode": "spans" if src["spans"] else "token_diff",
                "feedback_source": record.metadata.get("feedback_source", self.feedback_source),
                "edit_fraction": round(fraction, 4)}
        return Outcome(item.key, [PairwiseExample(record.prompt, record.chosen, record.rejected, record.margin,
                                                  meta)])
