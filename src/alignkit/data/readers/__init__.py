"""Row readers, one module per file format. Each turns a source into a stream of `(position, row)` where a row
is a plain dict with the file's column names, or a `DataError` for a row that cannot be read; record parsing and
validation (`alignkit.data.parse`) come after, the same for every format."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignkit.data.readers.common import RowStream, type_name
from alignkit.data.readers.csv import csv_rows
from alignkit.data.readers.datasets import datasets_rows
from alignkit.data.readers.json import json_rows
from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.data.readers.named import SUITE, hub_rows, is_named, split_name, suite_rows
from alignkit.data.readers.parquet import parquet_rows
from alignkit.errors import ConfigError, DataError

FORMATS = ("jsonl", "json", "parquet", "csv", "tsv", "datasets")


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "datasets"
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet"),
                        (".pq", "parquet"), (".csv", "csv"), (".tsv", "tsv")):
        if name.endswith(suffix):
            return fmt
    raise DataError("unknown file type; use .jsonl, .json, .parquet, .csv, .tsv or a datasets directory "
                    "(or pass format=...)", source=str(path))


def list_rows(rows: list[Any]) -> RowStream:
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            yield i, dict(row)
        else:
            yield i, DataError(f"expected an object, got {type_name(row)}", source="<records>", line=i)


def rows(source: Any, fmt: str | None, split: str | None) -> tuple[str, str, RowStream]:
    """(source name, format, row stream) for a path, a named source (`suite:test`, a cached hub dataset id,
    `alignkit.data.readers.named`), a list of row mappings or an in-memory `datasets.Dataset`."""
    if isinstance(source, list):
        return "<records>", "list", list_rows(source)
    if not isinstance(source, (str, os.PathLike)):
        return "<dataset>", "datasets", datasets_rows(source, split)
    path = Path(source)
    if not path.exists() and isinstance(source, str) and fmt is None and is_named(source):
        name, split = split_name(source, split)
        if name == SUITE:
            return source, "suite", suite_rows(split, source)
        return source, "hub", hub_rows(name, split, source)
    if not path.exists():
        raise DataError("no such file or directory", source=str(path))
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt != "datasets" and path.is_dir():
        raise DataError(f"is a directory; a directory is read as a datasets directory, not {fmt}", source=str(path))
    streams = {
        "jsonl": lambda: iter_jsonl_rows(path),
        "json": lambda: json_rows(path),
        "parquet": lambda: parquet_rows(path),
        "csv": lambda: csv_rows(path, ","),
        "tsv": lambda: csv_rows(path, "\t"),
        "datasets": lambda: datasets_rows(path, split),
    }
    return str(path), fmt, streams[fmt]()
