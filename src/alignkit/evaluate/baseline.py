"""Compare an `alignkit eval` run with a baseline run on the same prompts (testtime_eval.md Part B).

A comparison is only meaningful when both runs answered the same prompts and were scored by the same reward:
* prompts: every evaluated prompt id must be in the baseline, and where a baseline row records its `prompt`, the
  text must be the current one (a reused id with a different prompt is refused, not compared);
* reward: the baseline's stored rewards are used only when its run says they come from the same reward spec
  (`eval.json` `reward.name`, else `config.yaml` `reward`); otherwise (another spec, or a bare samples file whose
  spec is unknown) the baseline's completions are **rescored** with the current reward, and eval.json says so.

Differences to the baseline are paired bootstraps over prompt ids (`alignkit.evaluate.stats.paired_bootstrap`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.data.records import PromptExample
from alignkit.errors import DataError


def _samples_path(baseline: str) -> Path:
    path = Path(baseline)
    return path / "samples.jsonl" if path.is_dir() else path


def _same_prompt(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, ensure_ascii=False) == json.dumps(b, sort_keys=True, ensure_ascii=False)


def baseline_reward_spec(baseline: str) -> str | None:
    """The reward spec the baseline's stored rewards were computed with, or None when the run does not say."""
    path = Path(baseline)
    run_dir = path if path.is_dir() else path.parent
    ev_path = run_dir / "eval.json"
    if ev_path.is_file():
        try:
            ev = json.loads(ev_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"bad JSON ({e.msg})", source=str(ev_path), line=e.lineno) from e
        name = ev.get("reward", {}).get("name") if isinstance(ev, dict) and isinstance(ev.get("reward"), dict) else None
        if isinstance(name, str):
            return name
    cfg_path = run_dir / "config.yaml"
    if path.is_dir() and cfg_path.is_file():
        import yaml

        try:
            cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise DataError(f"invalid YAML: {e}", source=str(cfg_path)) from e
        if isinstance(cfg, dict) and isinstance(cfg.get("reward"), str):
            return cfg["reward"]
    return None


def baseline_rows(baseline: str, prompts: list[PromptExample], ids: list[str]) -> list[dict[str, Any]]:
    """The baseline's rows for `ids` (in that order); DataError naming FILE:LINE on a missing id, a row without a
    completion, or a row whose prompt differs from the evaluated one."""
    path = _samples_path(baseline)
    if not path.is_file():
        raise DataError("baseline has no samples.jsonl", source=str(path))
    by_id: dict[str, tuple[int, dict[str, Any]]] = {}
    for line, row in iter_jsonl_rows(path):
        if isinstance(row, DataError):
            raise row
        if "id" not in row:
            raise DataError("baseline row has no `id`: rows are matched to prompts by id", source=str(path),
                            line=line, field="id")
        if str(row["id"]) in by_id:
            raise DataError(f"duplicate id {row['id']!r} (first at line {by_id[str(row['id'])][0]})",
                            source=str(path), line=line, field="id")
        by_id[str(row["id"])] = (line, row)
    if not by_id:
        raise DataError("baseline has no samples", source=str(path))
    missing = [pid for pid in ids if pid not in by_id]
    if missing:
        raise DataError(f"{len(missing)} evaluated prompt id(s) are not in the baseline (first: {missing[0]!r}); "
                        "a win rate or paired difference needs both runs on the same prompts", source=str(path))
    out = []
    for pid, example in zip(ids, prompts, strict=True):
        line, row = by_id[pid]
        if not isinstance(row.get("completion"), str):
            raise DataError(f"baseline row for id {pid!r} has no string completion", source=str(path), line=line,
                            field="completion")
        if "prompt" in row and not _same_prompt(row["prompt"], example.prompt):
            raise DataError(f"baseline prompt for id {pid!r} differs from the evaluated prompt: the two runs did not "
                            "answer the same prompts", source=str(path), line=line, field="prompt")
        out.append(row)
    return out


def stored_rewards(rows: list[dict[str, Any]]) -> list[float] | None:
    """The rows' stored numeric rewards, or None if any row lacks one."""
    if not all(isinstance(r.get("reward"), int | float) and not isinstance(r.get("reward"), bool) for r in rows):
        return None
    return [float(r["reward"]) for r in rows]
