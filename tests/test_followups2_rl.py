"""Online RL reads its prompt file under `--on-bad-record` (issue #14.5), as offline training does: `skip` trains on
the good prompts and writes `RUN/data_skipped.json`; `error` (the default) stops at the first bad one, FILE:LINE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.errors import DataError
from alignkit.rl.trainer import run_online
from online_helpers import QUIET, length_reward, online_cfg


def _prompt_file(path: Path) -> Path:
    path.write_text('{"prompt": "Say something."}\n'
                    '{"text": "no prompt column"}\n'
                    '{"prompt": "Hello!"}\n'
                    '{"prompt": 7}\n', encoding="utf-8")
    return path


# ---------------------------------------------------------------- --on-bad-record for the prompt file
def test_skip_policy_trains_on_the_good_prompts_and_writes_data_skipped_json(tmp_path: Path) -> None:
    data = _prompt_file(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    messages: list[str] = []
    # Before: the prompt loader always read in error mode, so this raised at prompts.jsonl:2.
    res = run_online(online_cfg(run, str(data), on_bad_record="skip"), reward=length_reward(), log=messages.append)
    assert res.steps == 1
    assert any("2 prompt records" in m and "2 bad records skipped" in m for m in messages), messages
    report = json.loads((run / "data_skipped.json").read_text(encoding="utf-8"))
    assert report["policy"] == "skip"
    (entry,) = report["files"]
    assert (entry["source"], entry["kind"], entry["records"], entry["skipped"]) == (str(data), "prompt", 2, 2)
    assert [r["where"] for r in entry["skipped_records"]] == [f"{data}:2", f"{data}:4"]


def test_error_policy_stops_at_the_first_bad_prompt_with_file_line(tmp_path: Path) -> None:
    data = _prompt_file(tmp_path / "prompts.jsonl")
    with pytest.raises(DataError, match=rf"{data}:2: field 'prompt'"):
        run_online(online_cfg(tmp_path / "run", str(data)), reward=length_reward(), **QUIET)
    assert not (tmp_path / "run" / "data_skipped.json").exists()
