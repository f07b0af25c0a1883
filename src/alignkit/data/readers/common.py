"""Shared pieces of the row readers: binary opening (gzip by suffix), whole-file reads, offsets to lines, and
the type names error messages use."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from alignkit.errors import DataError

# Each reader yields (position, row dict or DataError): a bad row is a value, so callers choose to stop or skip.
RowStream = Iterator[tuple[int, "dict[str, Any] | DataError"]]


def open_binary(path: Path, mode: str, gz: bool | None = None) -> IO[bytes]:
    if path.name.endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)  # noqa: SIM115 - returned to the caller's `with`


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_bytes(path: Path) -> bytes:
    try:
        with open_binary(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read ({e})", source=str(path)) from None


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------------------------
# JSON with duplicate keys detected (issue #14.1): `json.loads` keeps the last value of a repeated key, so a row
# with "chosen" twice would validate with one of the two answers silently dropped.


class _RepeatedKeys(dict):
    """A JSON object whose text repeated a key; `repeated` is the first such key."""

    repeated: str = ""


def loads_json(text: str) -> tuple[Any, bool]:
    """`json.loads(text)` and whether any object in it repeated a key (then `duplicate_key_path` finds it).

    Raises what `json.loads` raises (ValueError, RecursionError)."""
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        found = True
        tagged = _RepeatedKeys(obj)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                tagged.repeated = key
                break
            seen.add(key)
        return tagged

    return json.loads(text, object_pairs_hook=hook), found


def own_duplicate_key(value: Any) -> str | None:
    """The key this very object repeated (not its children), or None."""
    return value.repeated if isinstance(value, _RepeatedKeys) else None


def duplicate_key_path(value: Any) -> str | None:
    """Path of the first repeated key inside `value` ("chosen", "prompt[0].role"), or None.

    Depth-first with an explicit stack: the JSON may be nested as deeply as the parser allows."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _RepeatedKeys):
            return f"{path}.{node.repeated}" if path else node.repeated
        if isinstance(node, dict):
            children = [(f"{path}.{k}" if path else str(k), v) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))  # reversed: pop() visits them in document order
    return None


DUPLICATE_KEY = "duplicate key in a JSON object (a reader would keep only the last value)"
