"""Prompts for online RL: a JSONL file of `{"prompt", "references"?, "constraints"?}` rows, or the shipped
constraint suite (`suite:train`, `suite:test`).

Extra columns go to `metadata`; a row without a usable prompt is an error naming file, line and field (never a
silent drop).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.data.records import PromptExample
from alignkit.errors import DataError

KNOWN = ("prompt", "references", "constraints", "metadata")


def _prompt_ok(p: Any) -> bool:
    if isinstance(p, str):
        return bool(p.strip())
    return isinstance(p, list) and bool(p) and all(isinstance(m, dict) and "role" in m and "content" in m for m in p)


def parse_prompt_row(row: Any, source: str, line: int) -> PromptExample:
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, got {type(row).__name__}", source=source, line=line)
    if "prompt" not in row:
        raise DataError("missing; prompts-only RL data needs a `prompt` column", source=source, line=line,
                        field="prompt")
    if not _prompt_ok(row["prompt"]):
        raise DataError("must be a non-empty string or a list of {role, content} messages", source=source,
                        line=line, field="prompt")
    refs = row.get("references") or []
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise DataError("must be a string or a list of strings", source=source, line=line, field="references")
    cons = row.get("constraints") or []
    if not isinstance(cons, list) or not all(isinstance(c, dict) for c in cons):
        raise DataError("must be a list of {id, kwargs} objects", source=source, line=line, field="constraints")
    meta = dict(row.get("metadata") or {})
    meta.update({k: v for k, v in row.items() if k not in KNOWN})
    return PromptExample(prompt=row["prompt"], references=list(refs), constraints=list(cons), metadata=meta)


def read_prompts(path: str | Path) -> list[PromptExample]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"prompt file {p} does not exist")
    out: list[PromptExample] = []
    with p.open(encoding="utf-8") as fh:
        for i, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg})", source=str(p), line=i) from e
            out.append(parse_prompt_row(row, str(p), i))
    if not out:
        raise DataError(f"{p} holds no prompts")
    return out


def load_prompts(spec: str, limit: int = 0) -> list[PromptExample]:
    """`suite:<split>` or a JSONL path; `limit > 0` keeps the first `limit` prompts."""
    if not spec:
        raise DataError("no prompts: set `data` to a JSONL file with a `prompt` column, or suite:train")
    if spec.startswith("suite:"):
        from alignkit.data.suite import load_suite

        records = load_suite(spec.split(":", 1)[1])
    else:
        records = read_prompts(spec)
    return records[:limit] if limit > 0 else records


def as_reward_record(r: PromptExample) -> dict[str, Any]:
    """The dict form rewards accept as a prompt record (`unpack_prompts` turns it into context columns)."""
    return {"prompt": r.prompt, "references": list(r.references) or None, "constraints": list(r.constraints) or None}
