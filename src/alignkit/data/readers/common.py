"""Shared pieces of the row readers: binary opening (gzip by suffix), whole-file reads, offsets to lines, and
the type names error messages use."""

from __future__ import annotations

import gzip
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
