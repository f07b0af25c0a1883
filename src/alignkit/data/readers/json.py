"""JSON documents: a list of objects, or `{"data": [...]}`; JSON lines under a `.json` name fall back to the
JSONL reader. Positions are 0-based list indices."""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.data.readers.common import (
    DUPLICATE_KEY,
    RowStream,
    duplicate_key_path,
    line_of_offset,
    loads_json,
    own_duplicate_key,
    read_bytes,
    type_name,
)
from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.errors import DataError


def json_rows(path: Path) -> RowStream:
    data = read_bytes(path)
    source = str(path)
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError("invalid UTF-8", source=source, line=line_of_offset(data, e.start)) from None
    if not text.strip():
        return  # no rows: an empty input, which the caller reports as such
    try:
        doc, repeated = loads_json(text)
    except RecursionError:
        raise DataError("bad JSON (nested too deeply)", source=source) from None
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # many tools write JSON lines under a .json name
            yield from iter_jsonl_rows(path)
            return
        raise DataError(f"bad JSON ({e.msg}, column {e.colno})", source=source, line=e.lineno) from None
    except ValueError as e:
        raise DataError(f"bad JSON ({e})", source=source) from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        if (key := own_duplicate_key(doc)) is not None:
            # The wrapper itself repeated a key ("data" twice): which list is meant is unknown.
            raise DataError(DUPLICATE_KEY, source=source, field=key)
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError("expected a JSON list of records or an object {\"data\": [...]}", source=source)
    for i, row in enumerate(doc):
        if not isinstance(row, dict):
            yield i, DataError(f"expected a JSON object, got {type_name(row)}", source=source, line=i)
        elif repeated and (where := duplicate_key_path(row)) is not None:
            yield i, DataError(DUPLICATE_KEY, source=source, line=i, field=where)
        else:
            yield i, row
