"""Regression (HelpSteer2), MORE and PAL-B reward-model training on `tiny-random`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from alignkit.data.records import PairwiseExample, ScoredExample
from alignkit.errors import ConfigError, DataError
from alignkit.models import load_tokenizer
from alignkit.rewards.model import HELPSTEER2_ATTRIBUTES, RewardModel
from alignkit.rewards.registry import load_reward
from alignkit.rewards.training import (
    MOREStep,
    PALReward,
    RewardTrainConfig,
    TaskBalancedSource,
    collate_rm,
    tokenize_rm_records,
    train_reward_model,
)

WORDS = "the a river stone cloud quiet green fast small bright old window paper garden".split()


def words(rng: random.Random, n: int = 5) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def cfg(tmp_path: Path, name: str, **kw: object) -> RewardTrainConfig:
    base: dict = dict(model="tiny-random", data="<memory>", output_dir=str(tmp_path / name), lr=3e-3,
                      max_steps=12, batch_size=8, progress=False, scheduler="constant", max_length=64,
                      torch_threads=1)  # one thread: the test CPU is shared
    base.update(kw)
    return RewardTrainConfig(**base)


# -- regression -------------------------------------------------------------------------------------------------


def scored(n: int, seed: int) -> list[ScoredExample]:
    """helpfulness = 4 with the marker word, else 0; verbosity = 1 or 3 by length; correctness often missing."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        marker = i % 2 == 0
        long = rng.random() < 0.5
        text = words(rng, 8 if long else 3) + (" banana" if marker else "")
        attrs = {"helpfulness": 4.0 if marker else 0.0, "verbosity": 3.0 if long else 1.0}
        if rng.random() < 0.5:
            attrs["correctness"] = 2.0
        out.append(ScoredExample(f"Question {i // 2}?", text, attrs))
    return out


def test_regression_rm_reduces_masked_mse(tmp_path: Path) -> None:
    train, held = scored(96, 0), scored(40, 1)
    res = train_reward_model(cfg(tmp_path, "reg", objective="regression", lr=2e-3, max_steps=40), records=train,
                             eval_records=held)
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines() if '"mse"' in x]
    first, last = sum(r["mse"] for r in rows[:3]) / 3, sum(r["mse"] for r in rows[-3:]) / 3
    assert last < 0.5 * first
    # Held-out masked MSE: far below the untrained RM's (same seeded head) and below the best constant's.
    labels = torch.tensor([[r.attributes.get(a, float("nan")) for a in HELPSTEER2_ATTRIBUTES] for r in held])
    mask = ~labels.isnan()
    untrained = RewardModel.from_backbone("tiny-random", num_labels=5).score_matrix(
        [r.prompt for r in held], [r.completion for r in held])
    assert res.eval["mse"] < 0.5 * float(((untrained - labels.nan_to_num()) ** 2)[mask].mean())
    assert res.eval["mse"] < float(torch.nanmean((labels - torch.nanmean(labels, dim=0)) ** 2))
    assert res.eval["mse_by_attribute"]["coherence"] is None  # never labelled: fully masked
    assert "pairs_from_gold_scalar" in res.eval  # same-prompt completions ranked by the HelpSteer2 scalar
    rm = RewardModel.load(res.final_dir)
    assert rm.attributes == HELPSTEER2_ATTRIBUTES and rm.weights == [0.65, 0.8, 0.45, 0.55, -0.4]
    out = load_reward(f"rm:{res.final_dir}")(["Question 0?"], ["river banana"])
    assert out.attributes is not None and set(out.attributes[0]) == set(HELPSTEER2_ATTRIBUTES)


def test_regression_labels_are_masked_and_custom_attributes_kept() -> None:
    tok = load_tokenizer("tiny-random")
    recs = [ScoredExample("q", "a", {"style": 1.0, "extra": 5.0}), ScoredExample("q", "b", {"other": 2.0})]
    data = tokenize_rm_records(recs, RewardTrainConfig(objective="regression"), tok, attributes=["style"])
    assert data.labels == [[1.0]] and len(data) == 1
    assert sum(data.skipped.values()) == 2  # one record without the head's attributes + one ignored value
    batch = collate_rm(data, [0], tok.pad_token_id)
    assert batch.labels is not None and batch.labels.tolist() == [[1.0]]


# -- MORE ------------------------------------------------------------------------------------------------------


def two_task_pairs(n: int, seed: int) -> list[PairwiseExample]:
    """Task 'fruit' prefers the marker 'banana'; task 'length' prefers the longer answer."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3:
            out.append(PairwiseExample(f"q{i}", words(rng) + " banana", words(rng), metadata={"task": "fruit"}))
        else:
            out.append(PairwiseExample(f"q{i}", words(rng, 9), words(rng, 2), metadata={"source": "length"}))
    return out


def test_more_trains_two_tasks_with_simplex_weights(tmp_path: Path) -> None:
    res = train_reward_model(cfg(tmp_path, "more", objective="more", batch_size=4, max_steps=8, save_every=4,
                                 task_field=""), records=two_task_pairs(60, 0),
                             eval_records=two_task_pairs(30, 1))
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "lambda/fruit" in r]
    assert len(train_rows) == 8
    for r in train_rows:
        lam = [r["lambda/fruit"], r["lambda/length"]]
        assert min(lam) >= 0.0 and sum(lam) == pytest.approx(1.0, abs=1e-6)
    assert res.summary["groups"] == ["fruit", "length"]
    assert set(res.eval["by_category"]) == {"fruit", "length"}
    state = json.loads((res.run_dir / "checkpoints" / "step-8" / "state.json").read_text())
    hidden = RewardModel.load(res.final_dir).model.config.hidden_size
    assert len(state["objective_state"]["more_g"]) == 2 and len(state["objective_state"]["more_g"][0]) == hidden


def test_more_batches_hold_every_task_and_need_room_for_them() -> None:
    tok = load_tokenizer("tiny-random")
    data = tokenize_rm_records(two_task_pairs(12, 0), RewardTrainConfig(objective="more"), tok)
    src = TaskBalancedSource(data, tok.pad_token_id, batch_size=4)
    batch = src.get([5, 0, 7, 3])
    assert batch.groups is not None and batch.groups.tolist() == [0, 1, 0, 1]
    with pytest.raises(ConfigError, match="batch_size 1"):
        TaskBalancedSource(data, tok.pad_token_id, batch_size=1)
    with pytest.raises(DataError, match="task id"):
        tokenize_rm_records([PairwiseExample("q", "a", "b")], RewardTrainConfig(objective="more"), tok)


class _Fixed(torch.nn.Module):
    def __init__(self, scores: list[float], hidden: torch.Tensor) -> None:
        super().__init__()
        self.scores, self.hidden = torch.tensor(scores).unsqueeze(-1), hidden
        self.rm = torch.nn.Module()
        self.rm.backbone = torch.nn.Identity()
        self.rm.score = torch.nn.Linear(2, 1, bias=False)

    def forward(self, ids, mask, n_pairs=0, groups=None):
        return {"scores": self.scores, "hidden": self.hidden}


def test_more_step_matches_the_worked_example(monkeypatch: pytest.MonkeyPatch) -> None:
    # Spec §7.3: one pair per task, orthogonal unit head gradients → λ = [0.5, 0.5]; loss = 0.6436693.
    import alignkit.rewards.training.steps as rt

    monkeypatch.setattr(rt, "_parts", lambda m: (m.backbone, m.score))
    tok = load_tokenizer("tiny-random")
    data = tokenize_rm_records([PairwiseExample("q", "a", "b", metadata={"task": "x"}),
                                PairwiseExample("q", "c", "d", metadata={"task": "y"})],
                               RewardTrainConfig(objective="more"), tok)
    batch = collate_rm(data, [0, 1], tok.pad_token_id)
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])  # chosen rows, then rejected rows
    state: dict = {}
    loss, metrics, _ = MOREStep(["x", "y"], 0.99, "l2", state)(_Fixed([1.0, -0.5, 0.0, 0.0], hidden), batch)
    assert float(loss) == pytest.approx(0.6436693, abs=1e-6)
    assert metrics["lambda/x"] == pytest.approx(0.5) and metrics["lambda/y"] == pytest.approx(0.5)
    assert len(state["more_g"]) == 2


# -- PAL --------------------------------------------------------------------------------------------------------


def user_pairs(n: int, seed: int, user: str, likes: bool) -> list[PairwiseExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        yes, no = words(rng) + " banana", words(rng)
        chosen, rejected = (yes, no) if likes else (no, yes)
        out.append(PairwiseExample(f"Write something #{i}.", chosen, rejected, metadata={"user": user}))
    return out


@pytest.fixture(scope="module")
def pal_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pal")
    train = user_pairs(48, 0, "a", True) + user_pairs(48, 1, "b", False)
    held = user_pairs(12, 2, "a", True) + user_pairs(12, 3, "b", False)
    return train_reward_model(cfg(tmp, "pal", objective="pal", max_steps=12, pal_k=2, pal_dim=32), records=train,
                              eval_records=held)


def _accuracy(reward: PALReward, pairs: list[PairwiseExample], user: str | None) -> float:
    prompts = [p.prompt for p in pairs]
    c = reward(prompts, [p.chosen for p in pairs], user=user).scores
    r = reward(prompts, [p.rejected for p in pairs], user=user).scores
    return sum(x > y for x, y in zip(c, r, strict=True)) / len(pairs)


def test_pal_learns_opposite_users(pal_run) -> None:
    by_user = pal_run.eval["by_category"]
    assert by_user["a"]["accuracy"] >= 0.8 and by_user["b"]["accuracy"] >= 0.8
    loaded = load_reward(f"rm:{pal_run.final_dir}")
    assert isinstance(loaded, PALReward) and loaded.users == ["a", "b"]
    held = user_pairs(16, 4, "a", True)
    assert _accuracy(loaded, held, "a") >= 0.8 and _accuracy(loaded, held, "b") <= 0.2


def test_pal_fits_a_new_user_from_a_few_pairs(pal_run, tmp_path: Path) -> None:
    reward = PALReward.load(pal_run.final_dir)
    shots, test = user_pairs(8, 5, "c", True), user_pairs(24, 6, "c", True)
    before = _accuracy(reward, test, "c")  # unseen: uniform prototype weights
    reward.fit_user("c", [p.prompt for p in shots], [p.chosen for p in shots], [p.rejected for p in shots],
                    steps=50)
    after = _accuracy(reward, test, "c")
    assert after > before and after >= 0.8
    reward.save(tmp_path / "with_c")
    assert PALReward.load(tmp_path / "with_c").users == ["a", "b", "c"]
