"""`alignkit eval` reliability follow-ups (issue #14): a resume cuts a torn last line of samples.jsonl (the
`metrics.jsonl` rule) while other damage stays a FILE:LINE error, and a locked output directory is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alignkit.errors import DataError
from alignkit.evaluate.evaluation import EvalConfig, cut_torn_last_line, evaluate


def _prompts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Tell me about {w}."}) + "\n"
                            for i, w in enumerate(("cats", "rain", "bread"))))
    return path


def _cfg(prompts: Path, out: Path) -> EvalConfig:
    return EvalConfig(model="tiny-random", prompts=str(prompts), reward="csr", max_new_tokens=4, batch_size=2,
                      n_resamples=20, output_dir=str(out))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    out = root / "full"
    evaluate(_cfg(_prompts(root / "p.jsonl"), out))
    return out


def _interrupted(full: Path, to: Path) -> tuple[Path, list[str]]:
    """A copy of the run as an eval killed during generation leaves it: eval.json not yet written."""
    shutil.copytree(full, to)
    (to / "eval.json").unlink()
    return to / "samples.jsonl", (full / "samples.jsonl").read_text(encoding="utf-8").splitlines()


def _completions(path: Path) -> list[str]:
    return [json.loads(x)["completion"] for x in path.read_text(encoding="utf-8").splitlines()]


def test_resume_cuts_a_torn_last_line_and_regenerates_that_prompt(full: Path, tmp_path: Path, capsys) -> None:
    samples, whole = _interrupted(full, tmp_path / "torn")
    # Rows p0 and p1 complete, p2's write stopped half-way (no newline, half a JSON object).
    samples.write_text(whole[0] + "\n" + whole[1] + "\n" + whole[2][: len(whole[2]) // 2], encoding="utf-8")
    evaluate(_cfg(full.parent / "p.jsonl", samples.parent))  # before: DataError at samples.jsonl:3 (bad JSON)
    assert f"{samples}:3: torn last line" in capsys.readouterr().out
    assert _completions(samples) == [json.loads(x)["completion"] for x in whole]
    assert json.loads((samples.parent / "eval.json").read_text())["n_prompts"] == 3


def test_a_complete_last_line_that_lost_only_its_newline_is_kept_and_given_it_back(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": "p0"}\n{"id": "p1"}', encoding="utf-8")
    notes: list[str] = []
    assert cut_torn_last_line(path, notes.append) is False
    # Resumed appends then start on a line of their own instead of gluing onto p1's row.
    assert path.read_text(encoding="utf-8") == '{"id": "p0"}\n{"id": "p1"}\n' and notes == []
    # Killed inside the two bytes of an "é": not even valid UTF-8.
    path.write_bytes(b'{"id": "p0"}\n{"id": "p1", "completion": "caf\xc3')
    assert cut_torn_last_line(path, notes.append) is True
    assert path.read_text(encoding="utf-8") == '{"id": "p0"}\n'
    assert notes == [f"{path}:2: torn last line (an interrupted write) removed"]


def test_a_bad_line_that_is_not_the_last_is_an_error_at_file_line(full: Path, tmp_path: Path) -> None:
    samples, whole = _interrupted(full, tmp_path / "bad")
    damaged = whole[0] + "\n" + whole[1][:20] + "\n" + whole[2][:20]
    samples.write_text(damaged, encoding="utf-8")
    with pytest.raises(DataError, match=rf"{samples}:2: bad JSON"):
        evaluate(_cfg(full.parent / "p.jsonl", samples.parent))
    assert samples.read_text(encoding="utf-8") == damaged  # left as it was, for the user to look at


def test_a_whole_last_line_of_the_wrong_shape_is_not_torn_but_an_error(full: Path, tmp_path: Path) -> None:
    samples, whole = _interrupted(full, tmp_path / "shape")
    samples.write_text(whole[0] + "\n" + "[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{samples}:2: expected a JSON object"):
        evaluate(_cfg(full.parent / "p.jsonl", samples.parent))


def test_eval_json_records_how_its_intervals_were_bootstrapped(full: Path) -> None:
    headline = json.loads((full / "eval.json").read_text())
    assert headline["bootstrap"] == {"method": "percentile", "n_resamples": 20, "confidence": 0.95, "seed": 0,
                                     "unit": "prompt"}
    assert headline["reward"]["n"] == 3  # the unit: one observation per prompt
