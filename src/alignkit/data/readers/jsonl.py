"""JSON lines: the row reader for `.jsonl`/`.ndjson` (and `.gz`), plus helpers for any JSON-lines file
(run metrics, samples, records). Positions are 1-based line numbers."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from alignkit.data.readers.common import DUPLICATE_KEY, duplicate_key_path, loads_json, open_binary, type_name
from alignkit.errors import DataError


def parse_json_line(raw: bytes, source: str, line: int) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"invalid UTF-8 (byte {e.start} of the line)", source=source, line=line) from None
    if line == 1:
        text = text.lstrip("\ufeff")
    try:
        value, repeated = loads_json(text)
    except RecursionError:
        raise DataError("bad JSON (nested too deeply)", source=source, line=line) from None
    except ValueError as e:
        raise DataError(f"bad JSON ({e})", source=source, line=line) from None
    if not isinstance(value, dict):
        raise DataError(f"expected a JSON object, got {type_name(value)}", source=source, line=line)
    if repeated:
        raise DataError(DUPLICATE_KEY, source=source, line=line, field=duplicate_key_path(value))
    return value


def iter_jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """Yield `(line_number, object)` for each non-blank line, or `(line_number, DataError)` for a bad line,
    so a caller can choose to stop or to skip. `.gz` files are decompressed."""
    path = Path(path)
    try:
        handle = open_binary(path, "rb")
    except OSError as e:
        raise DataError(f"cannot open ({e.strerror})", source=str(path)) from None
    with handle:
        try:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    yield line, parse_json_line(raw, str(path), line)
                except DataError as e:
                    yield line, e
        except (OSError, EOFError) as e:  # e.g. a truncated .gz
            raise DataError(f"cannot read ({e})", source=str(path)) from None


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of a JSON-lines file; a bad line raises `DataError` naming file and line."""
    for _, row in iter_jsonl_rows(path):
        if isinstance(row, DataError):
            raise row
        yield row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_jsonl(path))


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]], append: bool = False) -> int:
    """Write objects one per line (UTF-8, NaN refused). Without `append` the file is written to a temporary
    name and renamed, so readers never see half a file. Returns the number of rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0

    def dump(handle: IO[bytes]) -> int:
        count = 0
        for row in rows:
            try:
                text = json.dumps(row, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise DataError(f"row {count} cannot be written as JSON ({e})", source=str(path)) from None
            handle.write(text.encode("utf-8") + b"\n")
            count += 1
        return count

    if append:
        with open_binary(path, "ab") as handle:
            return dump(handle)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with open_binary(tmp, "wb", gz=path.name.endswith(".gz")) as handle:
            n = dump(handle)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def append_jsonl(path: str | Path, row: Mapping[str, Any]) -> None:
    write_jsonl(path, [row], append=True)
