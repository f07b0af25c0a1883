"""Prompts for online RL: any prompt-record file (`prompt`, optional `references`, `constraints` or IFEval's
`instruction_id_list` + `kwargs`) or the shipped constraint suite (`suite:train`, `suite:test`), read by the same
reader and validation as the preference-data builders, so errors name file, line and field and nothing is dropped
silently: with `on_bad_record="skip"` (`alignkit train --on-bad-record skip`, as for offline training) bad records
are skipped, counted in one printed summary and listed in `RUN/data_skipped.json` (issue #14.5).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignkit.data.build.common import _ifeval_constraints
from alignkit.data.build.common import load_prompts as load_prompt_spec
from alignkit.data.io import OnBadRecord, read_records, write_skip_report
from alignkit.data.records import PromptExample
from alignkit.errors import DataError


def load_prompts(spec: str, limit: int = 0, on_bad_record: OnBadRecord = "error", skip_report: Path | None = None,
                 log: Callable[[str], None] = print) -> list[PromptExample]:
    """`suite:<split>` or a prompt file; `limit > 0` keeps the first `limit` prompts.

    `on_bad_record`: "error" raises the first bad record's DataError (FILE:LINE:field); "skip" skips bad records,
    logs the `ReadResult` summary and, when `skip_report` is given (the run directory's `data_skipped.json`; only
    the main process passes it), writes the same report as offline training (`alignkit.data.io.write_skip_report`).
    """
    if not spec:
        raise DataError("no prompts: set `data` to a JSONL file with a `prompt` column, or suite:train")
    if spec.startswith("suite:") or on_bad_record == "error":  # the shipped suite has no bad records to skip
        records = load_prompt_spec(spec)
    else:
        if not Path(spec).exists():
            raise DataError("prompt file not found (or use suite:train / suite:test)", source=spec)
        result = read_records(spec, kind="prompt", on_bad_record=on_bad_record)
        log(result.summary())
        if skip_report is not None:
            skip_report.parent.mkdir(parents=True, exist_ok=True)
            write_skip_report(skip_report, [result])
        records = [_ifeval_constraints(r) for r in result.records]  # IFEval's layout, as load_prompt_spec does
    if not records:
        raise DataError(f"{spec} holds no prompts")
    return records[:limit] if limit > 0 else records


def as_reward_record(r: PromptExample) -> dict[str, Any]:
    """The dict form rewards accept as a prompt record (`unpack_prompts` turns it into context columns)."""
    return {"prompt": r.prompt, "references": list(r.references) or None, "constraints": list(r.constraints) or None}
