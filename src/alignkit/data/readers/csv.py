"""CSV and TSV files: cells of list/mapping/number columns hold JSON, `label` holds true/false, and a text cell
that is a JSON list of objects is read as chat messages. Positions are 0-based data-row indices; messages about
quoting also name the physical lines (1-based, the header is line 1).

Quoting is read strictly (RFC 4180, what `csv.writer`, pandas and spreadsheets write): a field is either quoted
whole, with any quote inside it doubled, or holds no quote, delimiter or line break. A stray quote at the start of
a field otherwise opens a field that runs on until the next quote character, silently swallowing the rows in
between (issue #14.2); strict reading turns that into an error on the record where the quote opened, and reading
resumes on the next physical line, so the rows after it are still read and counted. A bare quote inside an
unquoted field (`5" screen`) is an error too: it is what the far end of a swallowed stretch looks like. A record
that legitimately spans lines (a quoted cell with newlines) still reads as one record.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignkit.data.readers.common import DUPLICATE_KEY, RowStream, duplicate_key_path, loads_json, read_bytes
from alignkit.errors import DataError

# Cells of these columns hold JSON in CSV files (lists, mappings, numbers, booleans).
_CSV_JSON_FIELDS = frozenset({"completions", "scores", "attributes", "references", "constraints", "messages",
                              "metadata"})
_CSV_NUMBER_FIELDS = frozenset({"margin", "score"})
_CSV_MAYBE_MESSAGES = frozenset({"prompt", "chosen", "rejected", "completion"})


def _json_cell(name: str, value: str, source: str, row: int) -> Any:
    """A cell's JSON, with a repeated key reported like in JSON files; raises ValueError/RecursionError."""
    parsed, repeated = loads_json(value)
    if repeated:
        where = duplicate_key_path(parsed)
        field = name if where is None else f"{name}.{where}" if where[0] != "[" else f"{name}{where}"
        raise DataError(DUPLICATE_KEY, source=source, line=row, field=field)
    return parsed


def csv_cell(name: str, value: str, source: str, row: int) -> Any:
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        raise DataError("invalid UTF-8", source=source, line=row, field=name)
    if name in _CSV_JSON_FIELDS or name in _CSV_NUMBER_FIELDS:
        if value.strip() == "":
            return None
        try:
            return _json_cell(name, value, source, row)
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
        # A chat-message list stored as JSON; text that only looks like one (not valid JSON) stays a string. A
        # valid JSON list of objects is messages even when one lacks its `role`: validation then says so, where
        # keeping it as a literal string prompt would train on the JSON text (issue #14.3).
        try:
            parsed = _json_cell(name, value, source, row)
        except (ValueError, RecursionError):
            return value
        if isinstance(parsed, list) and all(isinstance(m, dict) for m in parsed):
            return parsed
    return value


def _well_quoted(raw: str, cells: list[str], delimiter: str) -> bool:
    """Whether `raw` (a record's physical lines) is `cells` written the RFC 4180 way: each field quoted whole
    with inner quotes doubled, or bare and free of quotes, delimiters and line breaks."""
    pos = 0
    for k, cell in enumerate(cells):
        if k:
            if not raw.startswith(delimiter, pos):
                return False
            pos += len(delimiter)
        quoted = '"' + cell.replace('"', '""') + '"'
        if raw.startswith(quoted, pos):
            pos += len(quoted)
        elif raw.startswith(cell, pos) and not any(c in cell for c in ('"', delimiter, "\r", "\n")):
            pos += len(cell)
        else:
            return False
    return raw[pos:] in ("", "\n", "\r\n", "\r")


def _records(lines: list[str], delimiter: str) -> Iterator[tuple[int, int, list[str] | str]]:
    """`(first, last, cells)` for each CSV record with its physical lines (1-based); for a badly quoted record
    `cells` is the reason instead, and reading restarts on the line after that record's first line (the lines a
    stray quote swallowed are read again as the rows they were meant to be)."""
    start = 0  # index in `lines` where the current reader began
    while start < len(lines):
        reader = csv.reader(itertools.islice(lines, start, None), delimiter=delimiter, strict=True)
        done = 0  # lines this reader has consumed before the record being read
        try:
            for cells in reader:
                first, last = start + done + 1, start + reader.line_num
                done = reader.line_num
                if cells and not _well_quoted("".join(lines[first - 1:last]), cells, delimiter):
                    yield first, last, "a quote inside an unquoted field"
                    break
                yield first, last, cells
            else:
                return
        except csv.Error as e:
            first, last = start + done + 1, start + reader.line_num
            yield first, last, str(e)
        start = first  # `first` is 1-based, so as an index it is the line after the bad record's first


def csv_rows(path: Path, delimiter: str) -> RowStream:
    data = read_bytes(path)
    source = str(path)
    # surrogateescape keeps reading past invalid bytes so the bad row alone can be reported (and skipped).
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    # The same line splitting the csv module does on a file opened with newline="".
    lines = list(io.StringIO(text, newline=""))
    records = _records(lines, delimiter)
    first = next(records, None)
    if first is None:
        return
    if isinstance(first[2], str):
        raise DataError(f"bad CSV header ({first[2]})", source=source)
    header = first[2]
    if len(set(header)) != len(header):
        raise DataError(f"duplicate column names in the header {header}", source=source)
    for i, (top, bottom, cells) in enumerate(records):
        if isinstance(cells, str):
            span = f"physical line {top}" + (f" (read on to line {bottom})" if bottom != top else "")
            yield i, DataError(f"bad CSV quoting ({cells}) in the record starting on {span}; a stray quote? "
                               "Quote a field whole and double any quote inside it", source=source, line=i)
            continue
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            hint = f" (one record over physical lines {top}-{bottom}: a stray quote?)" if top != bottom else ""
            yield i, DataError(f"expected {len(header)} cells, found {len(cells)}{hint}", source=source, line=i)
            continue
        try:
            yield i, {name: csv_cell(name, value, source, i) for name, value in zip(header, cells, strict=True)}
        except DataError as e:
            yield i, e
