"""`alignkit data build` end to end on the tiny random model."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.data.io import read_records


def test_build_help_lists_sources_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["data", "build", "--help"])
    text = capsys.readouterr().out
    assert "--from {verifier,reference,reward,judge,feedback," in text and "examples:" in text
    for source in ("corrections", "steerlm", "steerlm2", "seq2seq-rm", "feedback-model", "language-feedback"):
        assert source in text


def test_cli_reward_build_resumes(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Tell me about topic {i}."}) + "\n"
                               for i in range(3)))
    out, report = tmp_path / "pairs.jsonl", tmp_path / "report.json"
    args = ["data", "build", "--from", "reward", "--reward", "keyword:the", "--policy", "tiny-random",
            "--prompts", str(prompts), "--n", "2", "--max-new-tokens", "6", "--out", str(out), "--no-progress",
            "--format", "listwise", "--report", str(report)]
    assert main(args + ["--limit", "1"]) == 0
    assert main(args) == 0
    rep = json.loads(report.read_text())
    assert rep["resumed"] == 1 and rep["processed"] == 2
    # every prompt is accounted for: written as a list or dropped because both samples scored the same
    done = (tmp_path / "pairs.jsonl.progress.jsonl").read_text().splitlines()[1:]
    assert sorted(json.loads(line)["key"] for line in done) == ["id:q0", "id:q1", "id:q2"]
    assert rep["records_total"] == sum(json.loads(line)["records"] for line in done)
    for rec in (read_records(out, kind="listwise").records if out.read_text().strip() else []):
        assert rec.metadata["policy"] == "tiny-random" and rec.metadata["reward"] == "keyword:the"


def test_cli_feedback_build(tmp_path):
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"id": "c", "messages": [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"},
        {"role": "user", "content": "That's wrong."}, {"role": "assistant", "content": "4"}]}) + "\n")
    out = tmp_path / "fb.jsonl"
    assert main(["data", "build", "--from", "feedback", "--conversations", str(chats), "--out", str(out),
                 "--no-progress"]) == 0
    (pair,) = read_records(out, kind="pairwise").records
    assert (pair.chosen, pair.rejected) == ("4", "5")


def test_cli_missing_options_are_clear_errors(tmp_path, capsys):
    assert main(["data", "build", "--from", "judge", "--policy", "tiny-random", "--prompts", "suite:test",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "--from judge needs --judge" in capsys.readouterr().err  # checked before any model loads
    assert main(["data", "build", "--from", "verifier", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "needs --prompts, --policy" in capsys.readouterr().err
