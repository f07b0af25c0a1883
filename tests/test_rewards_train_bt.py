"""Reward-model training on the engine: a BT RM on `tiny-random` learns a marker-word preference; margins,
centering and principle conditioning reach the batches; the run directory is complete and resumable."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from alignkit.config import load_config
from alignkit.data.records import PairwiseExample
from alignkit.errors import ConfigError, DataError
from alignkit.models import load_tokenizer
from alignkit.rewards.model import RewardModel
from alignkit.rewards.registry import load_reward
from alignkit.rewards.training import (
    BTStep,
    RewardTrainConfig,
    RMSource,
    collate_rm,
    tokenize_rm_records,
    train_reward_model,
)

WORDS = "the a river stone cloud quiet green fast small bright old window paper garden".split()


def marker_pairs(n: int, seed: int, **meta: object) -> list[PairwiseExample]:
    """Chosen completions end with the marker word 'banana'; rejected ones are random words only."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        chosen = " ".join(rng.choice(WORDS) for _ in range(5)) + " banana"
        rejected = " ".join(rng.choice(WORDS) for _ in range(5))
        out.append(PairwiseExample(f"Write something #{i}.", chosen, rejected, metadata=dict(meta)))
    return out


def cfg(tmp_path: Path, name: str, **kw: object) -> RewardTrainConfig:
    base: dict = dict(model="tiny-random", data="<memory>", output_dir=str(tmp_path / name), lr=3e-3,
                      max_steps=12, batch_size=8, progress=False, scheduler="constant", max_length=64,
                      torch_threads=1)  # one thread: the test CPU is shared
    base.update(kw)
    return RewardTrainConfig(**base)


@pytest.fixture(scope="module")
def bt_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("bt")
    return train_reward_model(cfg(tmp, "run", eval_every=6), records=marker_pairs(96, 0),
                              eval_records=marker_pairs(40, 1))


def test_bt_rm_learns_the_marker_preference(bt_run) -> None:
    assert bt_run.eval["accuracy"] >= 0.8  # held-out pairs, chance is 0.5
    rows = [json.loads(line) for line in (bt_run.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert len(train_rows) == 12 and train_rows[-1]["loss"] < train_rows[0]["loss"]
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [6, 12]


def test_run_directory_and_eval_json(bt_run) -> None:
    run = bt_run.run_dir
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "eval.json", "reliability.png"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "step-12" / "COMPLETE").exists()
    report = json.loads((run / "eval.json").read_text())
    assert report["n"] == 40 and 0.0 <= report["ece"] <= 1.0
    assert set(report) >= {"accuracy", "calibration_bin5", "calibration_bin10", "calibration_bin20"}
    resolved = load_config(RewardTrainConfig, run / "config.yaml")
    assert resolved.objective == "bt" and resolved.max_steps == 12


def test_final_directory_is_a_reward_model(bt_run) -> None:
    final = bt_run.final_dir
    rm = RewardModel.load(final)
    spec = load_reward(f"rm:{final}")
    held = marker_pairs(20, 2)
    chosen = rm([p.prompt for p in held], [p.chosen for p in held]).scores
    rejected = spec([p.prompt for p in held], [p.rejected for p in held]).scores
    assert sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(held) >= 0.8
    # The saved RM scores exactly as the trained module did on eval data.
    assert bt_run.reward is not None
    again = bt_run.reward([p.prompt for p in held], [p.chosen for p in held]).scores
    assert again == pytest.approx(chosen, abs=1e-4)


def test_margins_from_column_and_llama2_ratings() -> None:
    tok = load_tokenizer("tiny-random")
    recs = [PairwiseExample("q", "good", "bad", margin=0.5),
            PairwiseExample("q", "good", "bad", metadata={"rating": "Better"})]
    data = tokenize_rm_records(recs, RewardTrainConfig(), tok)
    assert data.margins == [0.5, 0.0]
    small = tokenize_rm_records(recs[1:], RewardTrainConfig(margin="small", rating_field="rating"), tok)
    assert small.margins == pytest.approx([2 / 3])
    recs2 = [PairwiseExample("q", "good", "bad", metadata={"rating": r})
             for r in ("significantly better", "better", "slightly better", "unsure")]
    assert tokenize_rm_records(recs2, RewardTrainConfig(margin="large"), tok).margins == [3.0, 2.0, 1.0, 0.0]
    with pytest.raises(DataError, match="rating"):
        tokenize_rm_records([PairwiseExample("q", "a", "b", metadata={"rating": "meh"})],
                            RewardTrainConfig(margin="small"), tok)
    with pytest.raises(DataError, match="rating"):
        tokenize_rm_records([PairwiseExample("q", "a", "b")], RewardTrainConfig(margin="small"), tok)


class _Fixed(torch.nn.Module):
    """Returns preset rewards, to check the step's loss against the spec's worked example."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = torch.tensor(scores).unsqueeze(-1)

    def forward(self, ids, mask, n_pairs=0, groups=None):
        return {"scores": self.scores}


def test_bt_step_matches_the_worked_example() -> None:
    # Spec §7.1: r_w = 1.0, r_l = 0.2, m = 0.5 → 0.5543552; centering c = 0.01 adds 0.0144.
    batch = collate_rm(tokenize_rm_records([PairwiseExample("q", "a", "b", margin=0.5)], RewardTrainConfig(),
                                           load_tokenizer("tiny-random")), [0], pad_id=0)
    loss, metrics, _ = BTStep()(_Fixed([1.0, 0.2]), batch)
    assert float(loss) == pytest.approx(0.5543552, abs=1e-6) and metrics["accuracy"] == 1.0
    loss_c, _, _ = BTStep(center_coef=0.01)(_Fixed([1.0, 0.2]), batch)
    assert float(loss_c) == pytest.approx(0.5543552 + 0.0144, abs=1e-6)


def test_collation_puts_chosen_then_rejected_and_counts_left_out_records() -> None:
    tok = load_tokenizer("tiny-random")
    recs = [PairwiseExample("q1", "yes", "no"), PairwiseExample("q2", "same", "same"),
            PairwiseExample("q3", "a much longer chosen answer here", "x")]
    data = tokenize_rm_records(recs, RewardTrainConfig(), tok)
    assert len(data) == 2 and sum(data.skipped.values()) == 1
    batch = RMSource(data, tok.pad_token_id).get([0, 1])
    assert batch.n_pairs == 2 and batch.input_ids.shape[0] == 4
    assert batch.attention_mask[0].sum() == len(data.chosen[0]) and batch.attention_mask[3].sum() == len(
        data.rejected[1])
    dropped = tokenize_rm_records(recs[2:], RewardTrainConfig(max_length=8, truncation="drop"), tok)
    assert len(dropped) == 0 and "too long (truncation=drop)" in dropped.skipped


def test_principle_objective_conditions_the_encoding(tmp_path: Path) -> None:
    tok = load_tokenizer("tiny-random")
    rule = "Prefer responses that mention bananas."
    recs = [PairwiseExample("q", "banana", "no", metadata={"principle": "Be brief."}),
            PairwiseExample("q", "banana", "no")]
    data = tokenize_rm_records(recs, RewardTrainConfig(objective="principle", principles=[rule]), tok)
    texts = [tok.decode(ids) for ids in data.chosen]
    assert "Be brief." in texts[0] and rule not in texts[0] and rule in texts[1]
    with pytest.raises(DataError, match="principle"):
        tokenize_rm_records(recs[1:], RewardTrainConfig(objective="principle"), tok)
    res = train_reward_model(cfg(tmp_path, "principle", objective="principle", principles=[rule], max_steps=8,
                                 max_length=96), records=marker_pairs(48, 3), eval_records=marker_pairs(24, 4))
    assert res.eval["accuracy"] >= 0.75
    rm = RewardModel.load(res.final_dir)
    assert rm.principles == [rule]  # scoring applies the training principle by default
    assert rule in tok.decode(rm.encode("q", "banana"))


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop_at_4(step: int) -> None:
        if step == 4:
            raise Stop

    recs = marker_pairs(48, 5)
    full = train_reward_model(cfg(tmp_path, "full", max_steps=6, save_every=2), records=recs)
    with pytest.raises(Stop):
        train_reward_model(cfg(tmp_path, "cut", max_steps=6, save_every=2), records=recs, on_checkpoint=stop_at_4)
    resumed = train_reward_model(cfg(tmp_path, "cut", max_steps=6, save_every=2, resume=True), records=recs)
    loss = [json.loads(x)["loss"] for x in (full.run_dir / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(x)["loss"] for x in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert again == pytest.approx(loss, rel=1e-5)


def test_bad_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="objective"):
        train_reward_model(cfg(tmp_path, "x", objective="dpo"), records=marker_pairs(8, 0))
    with pytest.raises(ConfigError, match="objective_args"):
        train_reward_model(cfg(tmp_path, "x", objective_args={"beta": 0.1}), records=marker_pairs(8, 0))
    with pytest.raises(ConfigError, match="no training data"):
        train_reward_model(RewardTrainConfig(model="tiny-random"))


def test_ranked_lists_train_as_all_valid_pairs(tmp_path: Path) -> None:
    from alignkit.data.io import write_records
    from alignkit.data.records import ListwiseExample

    rng = random.Random(7)
    lists = [ListwiseExample(f"q{i}", [" ".join(rng.choice(WORDS) for _ in range(4)) + " banana",
                                       " ".join(rng.choice(WORDS) for _ in range(4)),
                                       " ".join(rng.choice(WORDS) for _ in range(3))], [2.0, 1.0, 1.0])
             for i in range(24)]
    path = tmp_path / "lists.jsonl"
    write_records(path, lists)
    logs: list[str] = []
    res = train_reward_model(cfg(tmp_path, "lists", data=str(path), max_steps=2, eval_split=0.0), log=logs.append)
    assert res.summary["train_examples"] == 48  # 2 valid pairs per list; the tied pair is left out
    assert any("24 skipped" in m or "24 ties" in m for m in logs)


@pytest.mark.parametrize("tune", ["head", "lora"])
def test_head_only_and_lora_keep_the_backbone_base_weights(tmp_path: Path, tune: str) -> None:
    from safetensors.torch import load_file

    res = train_reward_model(cfg(tmp_path, tune, tune=tune, max_steps=3), records=marker_pairs(24, 8))
    fresh = RewardModel.from_backbone("tiny-random")
    trained = RewardModel.load(res.final_dir)
    emb = "model.embed_tokens.weight"
    assert torch.equal(fresh.model.state_dict()[emb], trained.model.state_dict()[emb])  # frozen either way
    assert not torch.equal(fresh.model.score.weight, trained.model.score.weight)  # the head trained
    q = "model.layers.0.self_attn.q_proj.weight"
    same_q = torch.equal(fresh.model.state_dict()[q], trained.model.state_dict()[q])
    assert same_q == (tune == "head")  # LoRA's update is merged into q_proj
    saved = load_file(str(res.final_dir / "model.safetensors"))
    assert not any("lora" in k or "base_layer" in k for k in saved)
    ckpt = load_file(str(res.run_dir / "checkpoints" / "step-3" / ("adapter.safetensors" if tune == "lora"
                                                                  else "model.safetensors")))
    assert all("lora" in k or "score" in k for k in ckpt)  # only trainable tensors are checkpointed
