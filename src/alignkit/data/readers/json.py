"""JSON documents: a list of objects, or `{"data": [...]}`; JSON lines under a `.json` name fall back to the
JSONL reader. Positions are 0-based list indices."""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.data.readers.common import RowStream, line_of_offset, read_bytes, type_name
from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.errors import DataError


def json_rows(path: Path) -> RowStream:
    data = read_bytes(path)
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError("invalid UTF-8", source=str(path), line=line_of_offset(data, e.start)) from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise DataError("bad JSON (nested too deeply)", source=str(path)) from None
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # many tools write JSON lines under a .json name
            yield from iter_jsonl_rows(path)
            return
        raise DataError(f"bad JSON ({e.msg}, column {e.colno})", source=str(path), line=e.lineno) from None
    except ValueError as e:
        raise DataError(f"bad JSON ({e})", source=str(path)) from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError("expected a JSON list of records or an object {\"data\": [...]}", source=str(path))
    for i, row in enumerate(doc):
        if isinstance(row, dict):
            yield i, row
        else:
            yield i, DataError(f"expected a JSON object, got {type_name(row)}", source=str(path), line=i)
