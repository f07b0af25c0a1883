"""Record parsing and validation: one row (a mapping with TRL column names) -> one record, with errors that
name source, line and field. Also kind detection from column names and the reverse mapping record -> row.
The rules are documented in `alignkit.data.io`."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

from alignkit.data.readers.common import type_name
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
# `messages`: a whole conversation (prompt + completion); `text`: TRL's language-modeling SFT rows (no prompt,
# the loss covers the whole text); `metadata`: a mapping merged into the record's metadata.
ALIASES = ("messages", "metadata", "text")
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
    (("text",), "sft"),  # last: a prompt file with a `text` metadata column stays prompt data
)


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
            raise self.error(name, f"expected a string, got {type_name(value)}")
        if not allow_empty and not value.strip():
            raise self.error(name, "empty text")
        return value

    def number(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {type_name(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise self.error(name, f"NaN or infinite value ({value})")
        return number

    def messages(self, name: str, value: Any, allow_empty: bool = False) -> list[dict[str, str]]:
        if not isinstance(value, list):
            raise self.error(name, f"expected a list of chat messages, got {type_name(value)}")
        if not value and not allow_empty:
            raise self.error(name, "empty message list")
        out = []
        for i, message in enumerate(value):
            where = f"{name}[{i}]"
            if not isinstance(message, dict):
                raise self.error(where, f"expected a message object {{role, content}}, got {type_name(message)}")
            role, content = message.get("role"), message.get("content")
            if not isinstance(role, str) or role not in ROLES:
                raise self.error(f"{where}.role", f"expected one of {sorted(ROLES)}, got {role!r}")
            if not isinstance(content, str):
                raise self.error(f"{where}.content", f"expected a string, got {type_name(content)}")
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
            return self.chat_prompt(name, self.messages(name, value))
        raise self.error(name, f"expected a string or a list of chat messages, got {type_name(value)}")

    def chat_prompt(self, name: str, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """A chat prompt must say something, as a string prompt must (issue #14.3): one whose every message is
        empty would train on the template alone."""
        if not any(m["content"].strip() for m in messages):
            raise self.error(name, "empty prompt (every message's content is empty)")
        return messages

    def completion(self, name: str, value: Any = None) -> str:
        """A completion: a string, or (TRL's conversational form) a list holding one assistant message."""
        value = self.get(name) if value is None else value
        if isinstance(value, list):
            messages = self.messages(name, value)
            if len(messages) != 1 or messages[0]["role"] != "assistant":
                raise self.error(name, "a message-list completion must be exactly one assistant message")
            value = messages[0]["content"]
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {type_name(value)}")
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
    prompt = row.chat_prompt(name, messages[:-1])
    return prompt, row.completion(f"{name}[{len(messages) - 1}].content", messages[-1]["content"])


def _prompt_and_completion(row: _Row, allow_text: bool = False) -> tuple[Any, str, set[str]]:
    """(prompt, completion, fields used) from `prompt`+`completion`, from `messages`, or (`allow_text`, SFT) from
    TRL's language-modeling `text` column: an empty prompt, so the loss covers the whole text, as TRL's
    SFTTrainer trains a `text` dataset."""
    if allow_text and row.has("text") and not (row.has("prompt") or row.has("completion") or row.has("messages")):
        return "", row.completion("text"), {"text"}
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
    return row.chat_prompt("prompt", chosen[:shared]), chosen[shared]["content"], rejected[shared]["content"]


def _implicit_text_prompt(row: _Row) -> tuple[str, str, str]:
    """TRL's implicit-prompt pairs of plain strings (`trl.extract_prompt`): the longest common prefix of `chosen`
    and `rejected` is the prompt; a space just before the split point stays with the completions."""
    chosen, rejected = row.text("chosen"), row.text("rejected")
    if chosen == rejected:
        raise row.error("rejected", "chosen is identical to rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared and chosen[shared - 1] == " ":
        shared -= 1
    if not chosen[:shared].strip():
        raise row.error("prompt", "missing field (chosen and rejected share no leading text to use as the "
                                  "prompt, as TRL's extract_prompt would)")
    return chosen[:shared], row.completion("chosen", chosen[shared:]), row.completion("rejected", rejected[shared:])


def _check_consistent_scores(row: _Row, texts: list[str], numbers: list[float]) -> None:
    """The same completion scored twice with different scores contradicts itself (as chosen == rejected does
    for a pair, issue #14.3); repeated with the same score it is a harmless tie."""
    first: dict[str, int] = {}
    for j, text in enumerate(texts):
        i = first.setdefault(text, j)
        if numbers[i] != numbers[j]:
            raise row.error(f"completions[{j}]", f"identical to completions[{i}] but scored differently "
                                                 f"({numbers[i]:g} vs {numbers[j]:g})")


def _parse(row: _Row, kind: str) -> tuple[Record, set[str]]:
    """Validate one row as `kind`; returns the record (without metadata) and the field names it used."""
    if kind == "sft":
        prompt, completion, used = _prompt_and_completion(row, allow_text=True)
        return SFTExample(prompt, completion), used
    if kind == "pairwise":
        used = {"prompt", "chosen", "rejected", "margin"}
        if not row.has("prompt") and isinstance(row.data.get("chosen"), list):
            prompt, chosen, rejected = _implicit_prompt(row)
            chosen, rejected = row.completion("chosen", chosen), row.completion("rejected", rejected)
        elif not row.has("prompt") and isinstance(row.data.get("chosen"), str):
            prompt, chosen, rejected = _implicit_text_prompt(row)
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
            raise row.error("label", f"expected true/false, got {type_name(label)}")
        return UnpairedExample(prompt, completion, label), used | {"label"}
    if kind == "listwise":
        prompt = row.prompt()
        completions, scores = row.get("completions"), row.get("scores")
        if not isinstance(completions, list):
            raise row.error("completions", f"expected a list, got {type_name(completions)}")
        if not isinstance(scores, list):
            raise row.error("scores", f"expected a list of numbers, got {type_name(scores)}")
        if len(completions) < 2:
            raise row.error("completions", f"a ranked list needs at least 2 completions, got {len(completions)}")
        if len(scores) != len(completions):
            raise row.error("scores", f"{len(scores)} scores for {len(completions)} completions")
        texts = [row.completion(f"completions[{i}]", c) for i, c in enumerate(completions)]
        numbers = [row.number(f"scores[{i}]", s) for i, s in enumerate(scores)]
        _check_consistent_scores(row, texts, numbers)
        return ListwiseExample(prompt, texts, numbers), {"prompt", "completions", "scores"}
    if kind == "scored":
        prompt, completion, used = _prompt_and_completion(row)
        if row.has("attributes"):
            attributes = row.get("attributes")
            if not isinstance(attributes, dict) or not attributes:
                raise row.error("attributes", f"expected a non-empty object of name: number, got "
                                              f"{type_name(attributes)}")
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
            row.chat_prompt("messages", prompt)
            used = (used - {"prompt"}) | {"messages"}
        else:
            prompt = row.prompt()
        references = row.data.get("references")
        if references is None:
            references = []
        elif isinstance(references, str):
            references = [references]
        if not isinstance(references, list):
            raise row.error("references", f"expected a list of strings, got {type_name(references)}")
        references = [row.text(f"references[{i}]", r, allow_empty=True) for i, r in enumerate(references)]
        constraints = row.data.get("constraints")
        if constraints is None:
            constraints = []
        if not isinstance(constraints, list) or not all(isinstance(c, dict) for c in constraints):
            raise row.error("constraints", f"expected a list of objects, got {type_name(constraints)}")
        return PromptExample(prompt, references, [dict(c) for c in constraints]), used
    raise ConfigError(f"unknown data kind {kind!r}; choose one of {sorted(DATA_KINDS)}")


def parse_record(data: Mapping[str, Any], kind: str, *, source: str = "<record>", line: int | None = None
                 ) -> Record:
    """Validate one row (a mapping with TRL column names) as a record of `kind`; unused columns -> metadata."""
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind {kind!r}; choose one of {sorted(DATA_KINDS)}")
    if not isinstance(data, Mapping):
        raise DataError(f"expected an object, got {type_name(data)}", source=source, line=line)
    row = _Row(data, source, line)
    record, used = _parse(row, kind)
    metadata: dict[str, Any] = {}
    nested = data.get("metadata")
    if nested is not None:
        if not isinstance(nested, dict):
            raise row.error("metadata", f"expected an object, got {type_name(nested)}")
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


def kind_of(record: Record) -> str:
    for kind, cls in DATA_KINDS.items():
        if type(record) is cls:
            return kind
    raise DataError(f"not an alignkit record: {type(record).__name__}")


def record_to_row(record: Record) -> dict[str, Any]:
    """A record as a JSON-ready row with TRL column names (defaults left out; metadata flattened unless a key
    would be read as a field, in which case it is nested under `metadata`)."""
    kind = kind_of(record)
    row: dict[str, Any] = {}
    if kind == "sft" and record.prompt == "":  # a language-modeling row (TRL's `text` column)
        row["text"] = record.completion  # type: ignore[attr-defined]
    for name in () if "text" in row else KIND_FIELDS[kind]:
        value = getattr(record, name)
        if value is None or (kind == "prompt" and name != "prompt" and value == []):
            continue
        row[name] = value
    nested = {k: v for k, v in record.metadata.items() if k in RESERVED}
    row.update({k: v for k, v in record.metadata.items() if k not in RESERVED})
    if nested:
        row["metadata"] = nested
    return row

