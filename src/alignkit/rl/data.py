"""Prompts for online RL: any prompt-record file (`prompt`, optional `references`, `constraints` or IFEval's
`instruction_id_list` + `kwargs`) or the shipped constraint suite (`suite:train`, `suite:test`), read by the same
loader as the preference-data builders, so errors name file, line and field and nothing is dropped silently.
"""

from __future__ import annotations

from typing import Any

from alignkit.data.build.common import load_prompts as _load
from alignkit.data.records import PromptExample
from alignkit.errors import DataError


def load_prompts(spec: str, limit: int = 0) -> list[PromptExample]:
    """`suite:<split>` or a prompt file; `limit > 0` keeps the first `limit` prompts."""
    if not spec:
        raise DataError("no prompts: set `data` to a JSONL file with a `prompt` column, or suite:train")
    records = _load(spec)
    if not records:
        raise DataError(f"{spec} holds no prompts")
    return records[:limit] if limit > 0 else records


def as_reward_record(r: PromptExample) -> dict[str, Any]:
    """The dict form rewards accept as a prompt record (`unpack_prompts` turns it into context columns)."""
    return {"prompt": r.prompt, "references": list(r.references) or None, "constraints": list(r.constraints) or None}
