"""CSV and TSV files: cells of list/mapping/number columns hold JSON, `label` holds true/false, and a text cell
that is a JSON list of chat messages is read as messages. Positions are 0-based data-row indices."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from alignkit.data.readers.common import RowStream, read_bytes
from alignkit.errors import DataError

# Cells of these columns hold JSON in CSV files (lists, mappings, numbers, booleans).
_CSV_JSON_FIELDS = frozenset({"completions", "scores", "attributes", "references", "constraints", "messages",
                              "metadata"})
_CSV_NUMBER_FIELDS = frozenset({"margin", "score"})
_CSV_MAYBE_MESSAGES = frozenset({"prompt", "chosen", "rejected", "completion"})


def csv_cell(name: str, value: str, source: str, row: int) -> Any:
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        raise DataError("invalid UTF-8", source=source, line=row, field=name)
    if name in _CSV_JSON_FIELDS or name in _CSV_NUMBER_FIELDS:
        if value.strip() == "":
            return None
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            if name in _CSV_NUMBER_FIELDS:
                raise DataError(f"expected a number, got {value!r}", source=source, line=row, field=name) from None
            raise DataError("expected JSON in this CSV cell", source=source, line=row, field=name) from None
    if name == "label":
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise DataError(f"expected true/false, got {value!r}", source=source, line=row, field=name)
    if name in _CSV_MAYBE_MESSAGES and value.lstrip().startswith("[{"):
        # A chat-message list stored as JSON; a plain string that only looks like one stays a string.
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return value
        if isinstance(parsed, list) and all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return value


def csv_rows(path: Path, delimiter: str) -> RowStream:
    data = read_bytes(path)
    # surrogateescape keeps reading past invalid bytes so the bad row alone can be reported (and skipped).
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        if len(set(header)) != len(header):
            raise DataError(f"duplicate column names in the header {header}", source=str(path))
        for i, cells in enumerate(reader):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                yield i, DataError(f"expected {len(header)} cells, found {len(cells)}", source=str(path), line=i)
                continue
            try:
                yield i, {name: csv_cell(name, value, str(path), i) for name, value in zip(header, cells, strict=True)}
            except DataError as e:
                yield i, e
    except csv.Error as e:
        raise DataError(f"bad CSV ({e})", source=str(path)) from None
