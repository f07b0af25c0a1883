"""`remodetect` reward-model training (testtime_eval.md §B6, wave2_selfalign_merge.md §9): the step reproduces the
spec's worked loss with the replay term, the replay term is exactly 0 before the first update, records are read by
score (never by list position), and `alignkit reward train --objective remodetect` learns to rank LLM-style text
above human-style text on `tiny-random` (detection AUROC in eval.json)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from alignkit.cli import main
from alignkit.data.records import ListwiseExample
from alignkit.errors import DataError
from alignkit.rewards.model import RewardModel
from alignkit.rewards.training import RewardTrainConfig, collate_rm, prepare_trainable, tokenize_rm_records
from alignkit.rewards.training.data import remodetect_triplet
from alignkit.rewards.training.steps import ReMoDetectStep, replay_rewards


class TableRM(nn.Module):
    """Reward = a table lookup by each row's first token id (so the test fixes every reward exactly)."""

    def __init__(self, table: dict[int, float]) -> None:
        super().__init__()
        self.table = table
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_pairs: int = 0) -> dict:
        r = torch.tensor([self.table[int(t)] for t in input_ids[:, 0]], dtype=torch.float64) + self.dummy
        return {"scores": r.unsqueeze(-1)}


def test_step_reproduces_the_worked_example_with_replay() -> None:
    # LLM text (token 1) r = 2.0, mixed (2) 0.5, human (3) −1.0; replay text (4): student 0.5, teacher 0.3.
    model = TableRM({1: 2.0, 2: 0.5, 3: -1.0, 4: 0.5})
    data = tokenize_rm_records([], RewardTrainConfig(objective="remodetect"), None)
    data.chosen, data.middle, data.rejected = [[1]], [[2]], [[3]]
    batch = collate_rm(data, [0], pad_id=0)
    state: dict = {}
    step = ReMoDetectStep([0.35, 1.0, 0.35], 0.01, replay=[[4]], replay_orig=[0.3], l2_ratio=0.01, state=state)
    loss, metrics, _ = step(model, batch, "train")
    assert float(loss.detach()) == pytest.approx(0.075134, abs=1e-6)
    assert [metrics["pair0"], metrics["pair1"], metrics["pair2"]] == pytest.approx([0.077932, 0.073587, 0.072682],
                                                                                   abs=1e-6)
    assert metrics["replay"] == pytest.approx(0.0004) and metrics["accuracy"] == 1.0
    # evaluation batches carry no replay term (the detector loss alone: 0.074734) and leave the position alone
    pos = dict(state)
    loss_eval, m_eval, _ = step(model, batch, "eval")
    assert float(loss_eval.detach()) == pytest.approx(0.074734, abs=1e-6) and "replay" not in m_eval and state == pos


def test_replay_term_is_zero_before_the_first_update() -> None:
    torch.manual_seed(0)
    rm = RewardModel.from_backbone("tiny-random", max_length=64)
    cfg = RewardTrainConfig(objective="remodetect", model="tiny-random", max_length=64)
    module = prepare_trainable(rm, cfg, None)
    recs = [ListwiseExample("", ["Certainly! Here is a clear answer.", "i think Here is an answer", "i dunno lol"],
                            [2.0, 1.0, 0.0])]
    data = tokenize_rm_records(recs, cfg, rm.tokenizer)
    replay = [rm.encode("", t) for t in ("a replay text", "another one, longer than the first")]
    pad = int(rm.tokenizer.pad_token_id)
    orig = replay_rewards(module, replay, pad, 2, "cpu")
    step = ReMoDetectStep(cfg.remodetect_lambdas, cfg.remodetect_beta, replay, orig, replay_batch_size=2,
                          pad_id=pad)
    _, metrics, _ = step(module, collate_rm(data, [0], pad), "train")
    assert metrics["replay"] == 0.0


def test_triplets_are_read_by_score_not_position() -> None:
    rec = ListwiseExample("", ["human words", "LLM words", "mixed words"], [0.0, 2.0, 1.0])
    assert remodetect_triplet(rec, "r") == ("LLM words", "mixed words", "human words")
    with pytest.raises(DataError, match="three distinct"):
        remodetect_triplet(ListwiseExample("", ["a", "b", "c"], [1.0, 1.0, 0.0]), "r")
    with pytest.raises(DataError, match="exactly 3 completions"):
        remodetect_triplet(ListwiseExample("", ["a", "b"], [1.0, 0.0]), "r")


def test_rows_dropped_by_the_one_word_filter_are_reported(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from alignkit.rewards.training.data import _read

    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"llm": "Certainly! Here.", "mixed": "I penned this.", "human": "I wrote this."})
                    + "\n" + json.dumps({"llm": "lessnesslessness", "mixed": "x y", "human": "a b"}) + "\n")
    assert len(_read(str(path), RewardTrainConfig(objective="remodetect"))) == 1
    assert "skipped 1 of 2 ReMoDetect rows" in capsys.readouterr().err


WORDS = "river stone cloud quiet green window paper garden".split()


def triplet_rows(n: int, seed: int) -> list[dict]:
    """LLM-style text opens with "Certainly!" and reads formal; human-style text is lower-case and terse; the
    mixed text is the human text with its first half rewritten in the LLM style."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = " ".join(rng.choice(WORDS) for _ in range(3))
        rows.append({"human": f"{topic} idk really lol", "llm": f"Certainly! Here is a detailed overview of {topic}.",
                     "mixed": f"Certainly! Here is {topic}. idk really"})
    return rows


def test_cli_trains_a_detector_with_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(name: str, rows: list[dict]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    train, held = write("train.jsonl", triplet_rows(48, 0)), write("held.jsonl", triplet_rows(16, 1))
    replay = write("replay.jsonl", [{"prompt": "Hi", "chosen": "Hello there.", "rejected": "Go away."},
                                    {"text": "A plain replay text."}])
    run = tmp_path / "run"
    rc = main(["reward", "train", "--objective", "remodetect", "--model", "tiny-random", "--data", str(train),
               "--eval-data", str(held), "--output-dir", str(run), "--max-steps", "10",
               "--set", f"replay_data={replay}", "--set", "lr=3e-3", "--set", "batch_size=8",
               "--set", "max_length=48", "--set", "progress=false", "--set", "scheduler=constant",
               "--set", "torch_threads=1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "replay: 3 texts" in out and "auroc" in out
    report = json.loads((run / "eval.json").read_text())
    assert report["objective"] == "remodetect" and report["examples"] == 16
    assert report["auroc"] >= 0.9 and report["accuracy"] >= 0.9  # LLM text above human text
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("train/replay" in r or "replay" in r for r in logged)
    # the trained directory scores raw text as a detector (reward eval on text/label rows → AUROC)
    texts = write("detect.jsonl", [{"text": r["llm"], "label": 1} for r in triplet_rows(8, 2)]
                  + [{"text": r["human"], "label": 0} for r in triplet_rows(8, 2)])
    assert main(["reward", "eval", "--reward", f"rm:{run / 'final'}", "--data", str(texts), "--out-dir",
                 str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["auroc"] >= 0.9


def test_cli_choices_match_the_trainer_objectives() -> None:
    from alignkit.cli.reward_train import RM_OBJECTIVES
    from alignkit.rewards.training.config import OBJECTIVES

    assert RM_OBJECTIVES == list(OBJECTIVES)
