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

Every later row is validated against that kind. Positions in error messages are `FILE:N`, where N is the 1-based
line number for JSONL and the 0-based row index (what `dataset[i]` gives) for JSON, Parquet, CSV and `datasets`.

Validation raises `DataError` naming file, line/row and field. With `on_bad_record="skip"` bad records are
skipped, counted and listed in `ReadResult.skipped` (and `ReadResult.summary()`), never dropped silently.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, Literal

from alignkit.data.records import (
    DATA_KINDS,
    JudgedExample,
    ListwiseExample,
    PairwiseExample,
    PromptExample,
    Record,
    ScoredExample,
    SFTExample,
    UnpairedExample,
)
from alignkit.errors import ConfigError, DataError

OnBadRecord = Literal["error", "skip"]
FORMATS = ("jsonl", "json", "parquet", "csv", "tsv", "datasets")
ROLES = frozenset({"system", "user", "assistant", "tool"})

# Field names each kind reads; a column outside these (and outside ALIASES) is metadata.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt", "completion"),
    "pairwise": ("prompt", "chosen", "rejected", "margin"),
    "unpaired": ("prompt", "completion", "label"),
    "listwise": ("prompt", "completions", "scores"),
    "scored": ("prompt", "completion", "attributes"),
    "judged": ("prompt", "completion", "judgment", "score"),
    "prompt": ("prompt", "references", "constraints"),
}
ALIASES = ("messages", "metadata")
# Writers nest metadata keys that a reader would take for a field (of any kind), and flatten the rest.
RESERVED = frozenset(itertools.chain(*KIND_FIELDS.values(), ALIASES))

# (column that decides, kind), in priority order: the auto-detection rule documented above.
DETECTION_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("completions", "scores"), "listwise"),
    (("chosen", "rejected"), "pairwise"),
    (("label",), "unpaired"),
    (("judgment",), "judged"),
    (("attributes",), "scored"),
    (("completion", "messages"), "sft"),
    (("prompt",), "prompt"),
)


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class ReadResult:
    """Records of one kind read from one source, plus every skipped record as `(where, reason)`."""

    records: list[Record]
    kind: str
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def skip_counts(self) -> Counter:
        """How many records were skipped for each reason (details in parentheses folded together)."""
        return Counter(_reason_category(reason) for _, reason in self.skipped)

    def summary(self) -> str:
        text = f"{self.source}: {len(self.records)} {self.kind} records"
        if not self.skipped:
            return text + ", none skipped"
        parts = [f"{n} × {reason}" for reason, n in self.skip_counts().most_common()]
        return text + f", {len(self.skipped)} bad records skipped: " + "; ".join(parts)


def _reason_category(reason: str) -> str:
    return re.sub(r"\s*\(.*\)$", "", reason)


# ---------------------------------------------------------------------------------------------------------------
# JSONL helpers (usable for any JSON-lines file: run metrics, samples, records)


def _open_binary(path: Path, mode: str, gz: bool | None = None) -> IO[bytes]:
    if path.name.endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)  # noqa: SIM115 - returned to the caller's `with`


def _parse_json_line(raw: bytes, source: str, line: int) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"invalid UTF-8 (byte {e.start} of the line)", source=source, line=line) from None
    if line == 1:
        text = text.lstrip("\ufeff")
    try:
        value = json.loads(text)
    except RecursionError:
        raise DataError("bad JSON (nested too deeply)", source=source, line=line) from None
    except ValueError as e:
        raise DataError(f"bad JSON ({e})", source=source, line=line) from None
    if not isinstance(value, dict):
        raise DataError(f"expected a JSON object, got {_type_name(value)}", source=source, line=line)
    return value


def iter_jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """Yield `(line_number, object)` for each non-blank line, or `(line_number, DataError)` for a bad line,
    so a caller can choose to stop or to skip. `.gz` files are decompressed."""
    path = Path(path)
    try:
        handle = _open_binary(path, "rb")
    except OSError as e:
        raise DataError(f"cannot open ({e.strerror})", source=str(path)) from None
    with handle:
        try:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    yield line, _parse_json_line(raw, str(path), line)
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
        with _open_binary(path, "ab") as handle:
            return dump(handle)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _open_binary(tmp, "wb", gz=path.name.endswith(".gz")) as handle:
            n = dump(handle)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def append_jsonl(path: str | Path, row: Mapping[str, Any]) -> None:
    write_jsonl(path, [row], append=True)


# ---------------------------------------------------------------------------------------------------------------
# Format readers: each yields (position, row dict or DataError)

RowStream = Iterator[tuple[int, "dict[str, Any] | DataError"]]


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


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_bytes(path: Path) -> bytes:
    try:
        with _open_binary(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read ({e})", source=str(path)) from None


def _json_rows(path: Path) -> RowStream:
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError("invalid UTF-8", source=str(path), line=_line_of_offset(data, e.start)) from None
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
            yield i, DataError(f"expected a JSON object, got {_type_name(row)}", source=str(path), line=i)


def _parquet_rows(path: Path) -> RowStream:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        i = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield i, row
                i += 1
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read Parquet ({e})", source=str(path)) from None


# Cells of these columns hold JSON in CSV files (lists, mappings, numbers, booleans).
_CSV_JSON_FIELDS = frozenset({"completions", "scores", "attributes", "references", "constraints", "messages",
                              "metadata"})
_CSV_NUMBER_FIELDS = frozenset({"margin", "score"})
_CSV_MAYBE_MESSAGES = frozenset({"prompt", "chosen", "rejected", "completion"})


def _csv_cell(name: str, value: str, source: str, row: int) -> Any:
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


def _csv_rows(path: Path, delimiter: str) -> RowStream:
    data = _read_bytes(path)
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
                yield i, {name: _csv_cell(name, value, str(path), i) for name, value in zip(header, cells, strict=True)}
            except DataError as e:
                yield i, e
    except csv.Error as e:
        raise DataError(f"bad CSV ({e})", source=str(path)) from None


def _datasets_rows(path: Path | Any, split: str | None) -> RowStream:
    import datasets

    if isinstance(path, (datasets.Dataset, datasets.DatasetDict)):
        ds = path
        source = "<dataset>"
    else:
        source = str(path)
        try:
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                ds = datasets.load_from_disk(str(path))
            else:
                ds = datasets.load_dataset(str(path), split=split)
        except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "cannot load"
            raise DataError(f"cannot load as a datasets directory ({type(e).__name__}: {e})", source=source) from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise DataError(f"choose a split with split=... (--split); this dataset has {sorted(ds)}", source=source)
        ds = ds[split]
    for i, row in enumerate(ds):
        yield i, dict(row)


def _list_rows(rows: list[Any]) -> RowStream:
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            yield i, dict(row)
        else:
            yield i, DataError(f"expected an object, got {_type_name(row)}", source="<records>", line=i)


def _rows(source: Any, fmt: str | None, split: str | None) -> tuple[str, str, RowStream]:
    """(source name, format, row stream) for a path or an in-memory `datasets.Dataset`."""
    if isinstance(source, list):
        return "<records>", "list", _list_rows(source)
    if not isinstance(source, (str, os.PathLike)):
        return "<dataset>", "datasets", _datasets_rows(source, split)
    path = Path(source)
    if not path.exists():
        raise DataError("no such file or directory", source=str(path))
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt != "datasets" and path.is_dir():
        raise DataError(f"is a directory; a directory is read as a datasets directory, not {fmt}", source=str(path))
    streams = {
        "jsonl": lambda: iter_jsonl_rows(path),
        "json": lambda: _json_rows(path),
        "parquet": lambda: _parquet_rows(path),
        "csv": lambda: _csv_rows(path, ","),
        "tsv": lambda: _csv_rows(path, "\t"),
        "datasets": lambda: _datasets_rows(path, split),
    }
    return str(path), fmt, streams[fmt]()


# ---------------------------------------------------------------------------------------------------------------
# Validation: one row (a mapping) -> one record


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


class _Row:
    """Field access with errors that name source, line and field."""

    def __init__(self, data: Mapping[str, Any], source: str, line: int | None) -> None:
        self.data, self.source, self.line = data, source, line

    def error(self, field_name: str | None, message: str) -> DataError:
        return DataError(message, source=self.source, line=self.line, field=field_name)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def get(self, name: str) -> Any:
        if not self.has(name):
            raise self.error(name, "missing field")
        return self.data[name]

    def text(self, name: str, value: Any = None, allow_empty: bool = False) -> str:
        value = self.get(name) if value is None else value
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_type_name(value)}")
        if not allow_empty and not value.strip():
            raise self.error(name, "empty text")
        return value

    def number(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {_type_name(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise self.error(name, f"NaN or infinite value ({value})")
        return number

    def messages(self, name: str, value: Any, allow_empty: bool = False) -> list[dict[str, str]]:
        if not isinstance(value, list):
            raise self.error(name, f"expected a list of chat messages, got {_type_name(value)}")
        if not value and not allow_empty:
            raise self.error(name, "empty message list")
        out = []
        for i, message in enumerate(value):
            where = f"{name}[{i}]"
            if not isinstance(message, dict):
                raise self.error(where, f"expected a message object {{role, content}}, got {_type_name(message)}")
            role, content = message.get("role"), message.get("content")
            if not isinstance(role, str) or role not in ROLES:
                raise self.error(f"{where}.role", f"expected one of {sorted(ROLES)}, got {role!r}")
            if not isinstance(content, str):
                raise self.error(f"{where}.content", f"expected a string, got {_type_name(content)}")
            # Arrow fills keys that other rows have with None; those are not part of this message.
            out.append({k: v for k, v in message.items() if v is not None})
        return out

    def prompt(self, name: str = "prompt", value: Any = None) -> str | list[dict[str, str]]:
        value = self.get(name) if value is None else value
        if isinstance(value, str):
            if not value.strip():
                raise self.error(name, "empty prompt")
            return value
        if isinstance(value, list):
            return self.messages(name, value)
        raise self.error(name, f"expected a string or a list of chat messages, got {_type_name(value)}")

    def completion(self, name: str, value: Any = None) -> str:
        """A completion: a string, or (TRL's conversational form) a list holding one assistant message."""
        value = self.get(name) if value is None else value
        if isinstance(value, list):
            messages = self.messages(name, value)
            if len(messages) != 1 or messages[0]["role"] != "assistant":
                raise self.error(name, "a message-list completion must be exactly one assistant message")
            value = messages[0]["content"]
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_type_name(value)}")
        if not value.strip():
            raise self.error(name, "empty completion")
        return value


def _split_conversation(row: _Row, name: str) -> tuple[list[dict[str, str]], str]:
    """`messages` -> (all turns before the last assistant turn, that turn's content)."""
    messages = row.messages(name, row.get(name))
    if messages[-1]["role"] != "assistant":
        raise row.error(name, "the last message must be the assistant's (it becomes the completion)")
    if len(messages) < 2:
        raise row.error(name, "needs at least one turn before the assistant's (it becomes the prompt)")
    return messages[:-1], row.completion(f"{name}[{len(messages) - 1}].content", messages[-1]["content"])


def _prompt_and_completion(row: _Row) -> tuple[Any, str, set[str]]:
    """(prompt, completion, fields used) from `prompt`+`completion` or from `messages`."""
    if row.has("messages") and not row.has("completion"):
        if row.has("prompt"):
            raise row.error("messages", "give either messages or prompt+completion, not both")
        prompt, completion = _split_conversation(row, "messages")
        return prompt, completion, {"messages"}
    return row.prompt(), row.completion("completion"), {"prompt", "completion"}


def _implicit_prompt(row: _Row) -> tuple[list[dict[str, str]], str, str]:
    """TRL's implicit-prompt pairs: `chosen` and `rejected` are whole conversations sharing every turn but the
    last assistant turn; the shared turns are the prompt."""
    chosen = row.messages("chosen", row.get("chosen"))
    rejected = row.messages("rejected", row.get("rejected"))
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == len(chosen) == len(rejected):
        raise row.error("rejected", "chosen is identical to rejected")
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        rest = conv[shared:]
        if len(rest) != 1 or rest[0]["role"] != "assistant":
            raise row.error(name, "with no prompt column, chosen and rejected must be conversations that share "
                                  "every turn except one final assistant turn")
    if shared == 0:
        raise row.error("prompt", "missing field (chosen and rejected share no turns to use as the prompt)")
    return chosen[:shared], chosen[shared]["content"], rejected[shared]["content"]


def _parse(row: _Row, kind: str) -> tuple[Record, set[str]]:
    """Validate one row as `kind`; returns the record (without metadata) and the field names it used."""
    if kind == "sft":
        prompt, completion, used = _prompt_and_completion(row)
        return SFTExample(prompt, completion), used
    if kind == "pairwise":
        used = {"prompt", "chosen", "rejected", "margin"}
        if not row.has("prompt") and isinstance(row.data.get("chosen"), list):
            prompt, chosen, rejected = _implicit_prompt(row)
            chosen, rejected = row.completion("chosen", chosen), row.completion("rejected", rejected)
        else:
            prompt = row.prompt()
            chosen, rejected = row.completion("chosen"), row.completion("rejected")
        if chosen == rejected:
            raise row.error("rejected", "chosen is identical to rejected")
        margin = row.number("margin", row.data["margin"]) if row.has("margin") else None
        return PairwiseExample(prompt, chosen, rejected, margin), used
    if kind == "unpaired":
        prompt, completion, used = _prompt_and_completion(row)
        label = row.get("label")
        if isinstance(label, int) and not isinstance(label, bool) and label in (0, 1):
            label = bool(label)
        if not isinstance(label, bool):
            raise row.error("label", f"expected true/false, got {_type_name(label)}")
        return UnpairedExample(prompt, completion, label), used | {"label"}
    if kind == "listwise":
        prompt = row.prompt()
        completions, scores = row.get("completions"), row.get("scores")
        if not isinstance(completions, list):
            raise row.error("completions", f"expected a list, got {_type_name(completions)}")
        if not isinstance(scores, list):
            raise row.error("scores", f"expected a list of numbers, got {_type_name(scores)}")
        if len(completions) < 2:
            raise row.error("completions", f"a ranked list needs at least 2 completions, got {len(completions)}")
        if len(scores) != len(completions):
            raise row.error("scores", f"{len(scores)} scores for {len(completions)} completions")
        texts = [row.completion(f"completions[{i}]", c) for i, c in enumerate(completions)]
        numbers = [row.number(f"scores[{i}]", s) for i, s in enumerate(scores)]
        return ListwiseExample(prompt, texts, numbers), {"prompt", "completions", "scores"}
    if kind == "scored":
        prompt, completion, used = _prompt_and_completion(row)
        if row.has("attributes"):
            attributes = row.get("attributes")
            if not isinstance(attributes, dict) or not attributes:
                raise row.error("attributes", f"expected a non-empty object of name: number, got "
                                              f"{_type_name(attributes)}")
            values = {str(k): row.number(f"attributes.{k}", v) for k, v in attributes.items()}
            used |= {"attributes"}
        elif row.has("score"):  # a single scalar score is the attribute "score"
            values = {"score": row.number("score", row.data["score"])}
            used |= {"score"}
        else:
            raise row.error("attributes", "missing field (or give a numeric 'score')")
        return ScoredExample(prompt, completion, values), used
    if kind == "judged":
        prompt, completion, used = _prompt_and_completion(row)
        judgment = row.text("judgment")
        score = row.number("score", row.data["score"]) if row.has("score") else None
        return JudgedExample(prompt, completion, judgment, score), used | {"judgment", "score"}
    if kind == "prompt":
        used = {"prompt", "references", "constraints"}
        if not row.has("prompt") and row.has("messages"):
            messages = row.messages("messages", row.get("messages"))
            # A conversation that ends with the assistant's answer is prompted with the turns before it.
            prompt: Any = messages[:-1] if messages[-1]["role"] == "assistant" else messages
            if not prompt:
                raise row.error("messages", "no turns before the assistant's to use as the prompt")
            used = (used - {"prompt"}) | {"messages"}
        else:
            prompt = row.prompt()
        references = row.data.get("references")
        if references is None:
            references = []
        elif isinstance(references, str):
            references = [references]
        if not isinstance(references, list):
            raise row.error("references", f"expected a list of strings, got {_type_name(references)}")
        references = [row.text(f"references[{i}]", r, allow_empty=True) for i, r in enumerate(references)]
        constraints = row.data.get("constraints")
        if constraints is None:
            constraints = []
        if not isinstance(constraints, list) or not all(isinstance(c, dict) for c in constraints):
            raise row.error("constraints", f"expected a list of objects, got {_type_name(constraints)}")
        return PromptExample(prompt, references, [dict(c) for c in constraints]), used
    raise ConfigError(f"unknown data kind {kind!r}; choose one of {sorted(DATA_KINDS)}")


def parse_record(data: Mapping[str, Any], kind: str, *, source: str = "<record>", line: int | None = None
                 ) -> Record:
    """Validate one row (a mapping with TRL column names) as a record of `kind`; unused columns -> metadata."""
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind {kind!r}; choose one of {sorted(DATA_KINDS)}")
    if not isinstance(data, Mapping):
        raise DataError(f"expected an object, got {_type_name(data)}", source=source, line=line)
    row = _Row(data, source, line)
    record, used = _parse(row, kind)
    metadata: dict[str, Any] = {}
    nested = data.get("metadata")
    if nested is not None:
        if not isinstance(nested, dict):
            raise row.error("metadata", f"expected an object, got {_type_name(nested)}")
        metadata.update(nested)
    for key, value in data.items():
        # Absent optional fields come back as None from columnar formats; they are not metadata.
        if key not in used and key != "metadata" and not (key in RESERVED and value is None):
            metadata[str(key)] = value
    if metadata:
        object.__setattr__(record, "metadata", metadata)
    return record


def detect_kind(columns: Iterable[str], source: str = "<data>") -> str:
    """The data kind implied by a row's column names (rule in the module docstring)."""
    names = set(columns)
    for keys, kind in DETECTION_RULES:
        if names & set(keys):
            return kind
    raise DataError(f"cannot tell the data kind from the columns {sorted(names)}; pass kind= (--kind) "
                    f"one of {sorted(DATA_KINDS)}", source=source)


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
    for line, data in rows:
        try:
            if isinstance(data, DataError):
                raise data
            if kind is None:
                kind = detect_kind(data.keys(), name)
            yield parse_record(data, kind, source=name, line=line)
        except DataError as e:
            if on_bad_record == "error":
                raise
            where = f"{e.source or name}:{e.line if e.line is not None else line}"
            reason = f"field '{e.field}': {e.reason}" if e.field else e.reason
            skipped.append((where, reason))


def read_records(source: str | Path | Any, kind: str | None = None, *, on_bad_record: OnBadRecord = "error",
                 format: str | None = None, split: str | None = None) -> ReadResult:
    """Read a JSONL/JSON/Parquet/CSV/TSV file, a `datasets` directory (`save_to_disk` output or a folder of
    data files) or an in-memory `datasets.Dataset` into validated records of one kind.

    `kind=None` auto-detects it from the first row's columns. `on_bad_record="error"` raises the first
    `DataError` (naming file, line/row and field); `"skip"` skips bad records and lists them in `skipped`.
    """
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
    found = kind or detected.get("kind")
    if found is None:
        if skipped:
            found = "unknown"
        elif kind is None:
            raise DataError("no records found, so the data kind cannot be detected; pass kind=", source=name)
        else:
            found = kind
    return ReadResult(records, found, name, skipped)


def kind_of(record: Record) -> str:
    for kind, cls in DATA_KINDS.items():
        if type(record) is cls:
            return kind
    raise DataError(f"not an alignkit record: {type(record).__name__}")


# ---------------------------------------------------------------------------------------------------------------
# Writers


def record_to_row(record: Record) -> dict[str, Any]:
    """A record as a JSON-ready row with TRL column names (defaults left out; metadata flattened unless a key
    would be read as a field, in which case it is nested under `metadata`)."""
    kind = kind_of(record)
    row: dict[str, Any] = {}
    for name in KIND_FIELDS[kind]:
        value = getattr(record, name)
        if value is None or (kind == "prompt" and name != "prompt" and value == []):
            continue
        row[name] = value
    nested = {k: v for k, v in record.metadata.items() if k in RESERVED}
    row.update({k: v for k, v in record.metadata.items() if k not in RESERVED})
    if nested:
        row["metadata"] = nested
    return row


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


# ---------------------------------------------------------------------------------------------------------------
# Bundled samples


def sample_path(kind: str) -> Path:
    """Path of the small bundled sample dataset for `kind` (pairwise, listwise, unpaired, sft)."""
    path = Path(str(resources.files("alignkit") / "resources" / "samples" / f"{kind}.jsonl"))
    if not path.exists():
        raise DataError(f"no bundled sample for kind {kind!r}", source=str(path))
    return path
