"""`alignkit data relabel` (reward-augmented pairs) and dpo's dynamic reward scaling reading each pair's margin."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.data.io import read_records
from alignkit.models import load_model
from alignkit.objectives import get_objective
from alignkit.train.batching import collate, tokenize_records
from alignkit.train.engine import ObjectiveStep
from alignkit.train.logps import CompletionLogProbs
from alignkit.train.reference import Reference

ROWS = [
    {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A chair.", "score_chosen": 9, "score_rejected": 2},
    {"prompt": "2 + 2?", "chosen": "4", "rejected": "5", "score_chosen": 8.5, "score_rejected": 4},
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Hello!", "score_chosen": 7, "score_rejected": 7},
    {"prompt": "Colour of the sky?", "chosen": "Blue.", "rejected": "Green.", "score_chosen": 10},
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_relabel_doubles_scored_pairs_and_counts_drops(tmp_path, capsys):
    src, out = write(tmp_path / "in.jsonl", ROWS), tmp_path / "aug.jsonl"
    assert main(["data", "relabel", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "relabelled 4 pairs into 4" in printed
    assert "equal_scores: 1" in printed and "missing_score: 1" in printed
    pairs = read_records(out, "pairwise").records
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("An apple.", "A chair.", 7.0), ("A chair.", "An apple.", 7.0), ("4", "5", 4.5), ("5", "4", 4.5)]
    assert pairs[0].prompt[0]["role"] == "system" and "Overall score: 9." in pairs[0].prompt[0]["content"]
    assert "Overall score: 8.5." in pairs[2].prompt[0]["content"]
    assert main(["data", "relabel", str(src), str(tmp_path / "nosys.jsonl"), "--no-system-role"]) == 0
    first = read_records(tmp_path / "nosys.jsonl", "pairwise").records[0]
    assert isinstance(first.prompt, str)  # a plain prompt stays plain: goal text + blank line + prompt
    assert "Overall score: 9." in first.prompt and first.prompt.endswith("\n\nName a fruit.")


def test_relabel_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["data", "relabel", "--help"])
    assert "alignkit data relabel scored_pairs.jsonl" in capsys.readouterr().out


def test_pair_margins_reach_logprobs(tmp_path):
    model, tok = load_model("tiny-random")
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c", "margin": 7.0},
            {"prompt": "d", "chosen": "e", "rejected": "f"}]  # a pair without a margin gets 0
    data = tokenize_records(read_records(write(tmp_path / "m.jsonl", rows), "pairwise").records, "pairwise", tok)
    step = ObjectiveStep(get_objective("dpo"), {}, Reference("none"), "cpu")
    lp = step.logprobs(CompletionLogProbs(model), collate(data, [0, 1], int(tok.pad_token_id)))
    assert lp.margins is not None and lp.margins.tolist() == [7.0, 0.0]


def test_dpo_reward_scaling_from_the_cli_uses_each_pair_margin(tmp_path, capsys):
    src, aug = write(tmp_path / "in.jsonl", ROWS[:2]), tmp_path / "aug.jsonl"
    assert main(["data", "relabel", str(src), str(aug)]) == 0
    run = tmp_path / "run"
    assert main(["train", "--model", "tiny-random", "--data", str(aug), "--objective", "dpo", "--output-dir", str(run),
                 "--set", "max_steps=1", "--set", "batch_size=4", "--set", "progress=false",
                 "--set", "torch_threads=1", "--set", "objective_args.reward_scaling_w=0.1"]) == 0
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    # β(δ) = β·(1 + w·(1 − e^{−δ})) per pair (k = 1), averaged over the batch's margins 7, 7, 4.5, 4.5.
    want = sum(0.1 * (1 + 0.1 * (1 - math.exp(-d))) for d in (7.0, 7.0, 4.5, 4.5)) / 4
    assert row["beta/mean"] == pytest.approx(want, rel=1e-5)
    assert torch.isfinite(torch.tensor(row["loss"]))
