"""Read and write preference data: JSONL, JSON, Parquet, CSV/TSV and `datasets` directories, validated into records.

Columns follow TRL: `prompt`, `chosen`, `rejected`, `completion`, `label`, plus `completions`/`scores` for ranked
lists, `messages` for whole conversations, `margin`, `attributes`, `judgment`/`score`, and
`references`/`constraints` for prompt-only data. Columns a kind does not use go into the record's `metadata`
(a `metadata` column holding a mapping is merged in too), and the writer puts them back, so a file read and
written again reads back identically.

Kind auto-detection (when `kind` is not given) looks at the column names of the first row (JSONL/JSON: the first
row that parses as an object; Parquet/CSV/datasets: the schema) and takes the first rule that matches:

    completions or scores -> listwise;  chosen or rejected -> pairwise;  label -> unpaired;
    judgment -> judged;  attributes -> scored;  completion or messages -> sft;  prompt -> prompt.

Every later row is validated against that kind (and one whose own columns imply another kind is an error).
Positions in error messages are `FILE:N`, where N is the 1-based line number for JSONL and the 0-based row index
(what `dataset[i]` gives) for JSON, Parquet, CSV and `datasets`.

Validation raises `DataError` naming file, line/row and field. With `on_bad_record="skip"` bad records are
skipped, counted and listed in `ReadResult.skipped` (and `ReadResult.summary()`), never dropped silently. An input
without a single row is an error unless `allow_empty=True`. The guarantee — every input loads exactly or yields a
FILE:LINE error — and its tests are in docs/reliability.md ("Data").

Layout: one row reader per format in `alignkit.data.readers` (rows are plain dicts or a `DataError`), record
parsing and validation in `alignkit.data.parse`; this module ties them together and re-exports their public names.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from alignkit.data.parse import (
    ALIASES,
    DETECTION_RULES,
    KIND_FIELDS,
    RESERVED,
    ROLES,
    detect_kind,
    kind_of,
    parse_record,
    record_to_row,
)
from alignkit.data.readers import FORMATS, detect_format
from alignkit.data.readers import rows as _rows
from alignkit.data.readers.jsonl import append_jsonl, iter_jsonl, iter_jsonl_rows, read_jsonl, write_jsonl
from alignkit.data.records import DATA_KINDS, Record
from alignkit.errors import ConfigError, DataError

__all__ = [
    "ALIASES", "DETECTION_RULES", "FORMATS", "KIND_FIELDS", "RESERVED", "ROLES", "OnBadRecord", "ReadResult",
    "append_jsonl", "detect_format", "detect_kind", "iter_jsonl", "iter_jsonl_rows", "iter_records", "kind_of",
    "parse_record", "read_jsonl", "read_records", "read_rows", "record_to_row", "sample_path", "write_jsonl", "write_records",
    "write_skip_report",
]

OnBadRecord = Literal["error", "skip"]


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class ReadResult:
    """Records of one kind read from one source, plus every skipped record as `(where, reason)`."""

    records: list[Record]
    kind: str
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # what was done to the data on the way in that the user did not ask for (e.g. pairs unpaired for KTO)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def skip_counts(self) -> Counter:
        """How many records were skipped for each reason (details in parentheses folded together)."""
        return Counter(_reason_category(reason) for _, reason in self.skipped)

    def summary(self) -> str:
        text = f"{self.source}: {len(self.records)} {self.kind} records"
        if self.notes:
            text += " (" + "; ".join(self.notes) + ")"
        if not self.skipped:
            return text + ", none skipped"
        parts = [f"{n} × {reason}" for reason, n in self.skip_counts().most_common()]
        return text + f", {len(self.skipped)} bad records skipped: " + "; ".join(parts)

    def skip_report(self) -> dict[str, Any]:
        """A JSON-ready account of what was read and skipped (counts by reason, then every FILE:LINE and why);
        `alignkit train --on-bad-record skip` writes it into the run directory as data_skipped.json."""
        return {"source": self.source, "kind": self.kind, "records": len(self.records), "skipped": len(self.skipped),
                "skipped_by_reason": dict(self.skip_counts().most_common()),
                "skipped_records": [{"where": where, "reason": reason} for where, reason in self.skipped]}


def _reason_category(reason: str) -> str:
    return re.sub(r"\s*\(.*\)$", "", reason)


# ---------------------------------------------------------------------------------------------------------------
# Public readers


def iter_records(source: str | Path | Any, kind: str | None = None, *, on_bad_record: OnBadRecord = "error",
                 format: str | None = None, split: str | None = None,
                 skipped: list[tuple[str, str]] | None = None) -> Iterator[Record]:
    """Stream validated records; bad ones raise (`error`) or are appended to `skipped` as (where, reason)."""
    if on_bad_record not in ("error", "skip"):
        raise ConfigError(f"on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    if kind is not None and kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind {kind!r}; choose one of {sorted(DATA_KINDS)}")
    name, _, rows = _rows(source, format, split)
    if skipped is None:
        skipped = []
    detected = kind is None
    for line, data in rows:
        try:
            if isinstance(data, DataError):
                raise data
            if kind is None:
                kind = detect_kind(data.keys(), name)
            elif detected:
                _check_same_kind(data, kind, name, line)
            yield parse_record(data, kind, source=name, line=line)
        except DataError as e:
            if on_bad_record == "error":
                raise
            where = f"{e.source or name}:{e.line if e.line is not None else line}"
            reason = f"field '{e.field}': {e.reason}" if e.field else e.reason
            skipped.append((where, reason))


def _check_same_kind(data: Mapping[str, Any], kind: str, source: str, line: int) -> None:
    """With the kind detected from the first row, a later row whose columns imply another kind would be read as
    the first row's kind, its own fields dropped into metadata (an unpaired file whose first row lacks `label`
    would train as SFT). Rows with no deciding column are left to validation."""
    try:
        own = detect_kind(data.keys(), source)
    except DataError:
        return
    if own != kind:
        raise DataError(f"this row's columns ({', '.join(sorted(map(str, data)))}) make it {own}, but the data kind "
                        f"was detected as {kind} from the first row; pass kind= (--kind) to say which",
                        source=source, line=line)


UNPAIR_NOTE = ("pairwise data unpaired for an unpaired objective: each pair became its chosen completion "
               "(label true) and its rejected one (label false), as TRL's KTO/BCO trainers do; "
               "`alignkit data convert --to unpaired` writes the same records to a file")


def read_rows(source: str | Path | Any, *, format: str | None = None, split: str | None = None
              ) -> tuple[str, Iterator[tuple[int, dict[str, Any]]]]:
    """(source name, raw rows) of any source `read_records` reads, for commands that want the columns as they
    are (samples, steering pairs): the same formats, names (`suite:test`, cached hub ids) and `split`; an
    unreadable row raises its `DataError`."""
    name, _, stream = _rows(source, format, split)

    def checked() -> Iterator[tuple[int, dict[str, Any]]]:
        for line, data in stream:
            if isinstance(data, DataError):
                raise data
            yield line, data

    return name, checked()


def _first_kind(source: str | Path | Any, format: str | None, split: str | None) -> str | None:
    """The kind the first readable row implies, or None (unreadable, empty, or no deciding column)."""
    try:
        name, _, stream = _rows(source, format, split)
        for _line, data in stream:
            if isinstance(data, DataError):
                return None
            return detect_kind(data.keys(), name)
    except DataError:
        return None
    return None


def read_records(source: str | Path | Any, kind: str | None = None, *, on_bad_record: OnBadRecord = "error",
                 format: str | None = None, split: str | None = None, allow_empty: bool = False,
                 unpair: bool = True) -> ReadResult:
    """Read a JSONL/JSON/Parquet/CSV/TSV file, a `datasets` directory (`save_to_disk` output or a folder of
    data files), a named source (`suite:test`, a hub dataset id in the local cache, `NAME:SPLIT`), a list of
    row mappings or an in-memory `datasets.Dataset` into validated records of one kind.

    `kind="unpaired"` on pairwise data (`unpair=True`, the default) unpairs it as TRL's KTO/BCO trainers do,
    and says so in `notes` and `summary()`.

    `kind=None` auto-detects it from the first row's columns. `on_bad_record="error"` raises the first
    `DataError` (naming file, line/row and field); `"skip"` skips bad records and lists them in `skipped`.
    An input with no rows at all (an empty file, a CSV with only its header, a zero-row Parquet file) raises
    `DataError` unless `allow_empty=True` (issue #14.4): an empty input is far more often a mistake upstream
    than an intended no-op. Blank lines do not count as rows; a bad row does.
    """
    if kind == "unpaired" and unpair and _first_kind(source, format, split) == "pairwise":
        from alignkit.data.convert import pairwise_to_unpaired

        paired = read_records(source, "pairwise", on_bad_record=on_bad_record, format=format, split=split,
                              allow_empty=allow_empty)
        unpaired, _ = pairwise_to_unpaired(paired.records)
        return ReadResult(list(unpaired), "unpaired", paired.source, paired.skipped, [*paired.notes, UNPAIR_NOTE])
    skipped: list[tuple[str, str]] = []
    name = (str(source) if isinstance(source, (str, os.PathLike))
            else "<records>" if isinstance(source, list) else "<dataset>")
    records: list[Record] = []
    detected: dict[str, str] = {}

    def tracked() -> Iterator[Record]:
        for record in iter_records(source, kind, on_bad_record=on_bad_record, format=format, split=split,
                                   skipped=skipped):
            detected.setdefault("kind", kind_of(record))
            yield record

    records = list(tracked())
    if not records and not skipped:
        if not allow_empty:
            undetectable = ", so the data kind cannot be detected" if kind is None else ""
            raise DataError(f"empty input: no records found{undetectable}; pass allow_empty=True (--allow-empty) "
                            "if that is intended", source=name)
        return ReadResult(records, kind or "unknown", name, skipped)
    return ReadResult(records, kind or detected.get("kind") or "unknown", name, skipped)


# ---------------------------------------------------------------------------------------------------------------
# Writers


def write_records(path: str | Path, records: Iterable[Record], append: bool = False) -> int:
    """Write records of one kind as JSONL that `read_records` reads back identically (metadata included; values
    JSON cannot hold become strings). Each record is validated first, so an invalid record fails here, not at
    the next read."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith((".jsonl", ".ndjson")):
        raise DataError("records are written as JSON lines; name the file .jsonl (or .jsonl.gz)", source=str(path))
    kinds: set[str] = set()

    def rows() -> Iterator[dict[str, Any]]:
        for i, record in enumerate(records):
            kind = kind_of(record)
            kinds.add(kind)
            if len(kinds) > 1:
                raise DataError(f"record {i} is {kind} but earlier records are {sorted(kinds - {kind})[0]}; "
                                "write one kind per file", source=str(path))
            # Metadata values JSON cannot hold (timestamps from Parquet, bytes) are written as strings.
            row = json.loads(json.dumps(record_to_row(record), default=str))
            parse_record(row, kind, source=f"record {i}")
            yield row

    return write_jsonl(path, rows(), append=append)


def write_skip_report(path: str | Path, results: Iterable[ReadResult]) -> Path:
    """Write `{"policy": "skip", "files": [ReadResult.skip_report(), ...]}` as JSON (temporary name, then
    renamed, so a reader never sees half a report); returns the path."""
    path = Path(path)
    report = {"policy": "skip", "files": [result.skip_report() for result in results]}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Bundled samples


def sample_path(kind: str) -> Path:
    """Path of the small bundled sample dataset for `kind` (pairwise, listwise, unpaired, sft)."""
    path = Path(str(resources.files("alignkit") / "resources" / "samples" / f"{kind}.jsonl"))
    if not path.exists():
        raise DataError(f"no bundled sample for kind {kind!r}", source=str(path))
    return path
