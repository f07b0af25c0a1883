"""Reward models on a tiny backbone: batched scoring, determinism, pooling, save/load, implicit DPO reward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignkit.models import load_model
from alignkit.rewards.base import call_reward
from alignkit.rewards.losses import bt_loss
from alignkit.rewards.model import RewardModel, implicit_dpo_reward, with_principles
from alignkit.rewards.registry import load_reward

PROMPTS = ["Say hi.", [{"role": "user", "content": "Name a colour."}], "Count to three."]
COMPLETIONS = ["Hello there!", "Blue.", "One, two, three."]


@pytest.fixture(scope="module")
def rm() -> RewardModel:
    return RewardModel.from_backbone("tiny-random", batch_size=2)


def test_scores_a_batch_deterministically_and_batch_invariantly(rm: RewardModel) -> None:
    a = call_reward(rm, PROMPTS, COMPLETIONS)
    b = call_reward(rm, PROMPTS, COMPLETIONS)
    assert len(a.scores) == 3 and a.scores == b.scores
    singles = [call_reward(rm, [p], [c]).scores[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    assert singles == pytest.approx(a.scores, abs=1e-5)  # padding does not change a score
    again = RewardModel.from_backbone("tiny-random")
    assert call_reward(again, PROMPTS, COMPLETIONS).scores == pytest.approx(a.scores, abs=1e-6)


def test_score_is_read_at_the_last_real_token(rm: RewardModel) -> None:
    ids = torch.tensor([rm.encode("Say hi.", "Hello there!")])
    att = torch.ones_like(ids)
    padded = torch.cat([ids, torch.full((1, 3), rm.tokenizer.pad_token_id)], dim=1)
    padded_att = torch.cat([att, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(rm.forward(ids, att), rm.forward(padded, padded_att), atol=1e-5)
    assert ids[0, -1].item() == rm.tokenizer.eos_token_id  # EOS (= pad for SmolLM2) is the scored token


def test_forward_has_gradients_for_training(rm: RewardModel) -> None:
    rm.model.train()
    ids = torch.tensor([rm.encode("Say hi.", "Hello!"), rm.encode("Say hi.", "Go away")])
    r = rm.forward(ids, torch.ones_like(ids))
    bt_loss(r[0], r[1]).backward()
    head = rm.model.score.weight
    assert head.grad is not None and head.grad.abs().sum() > 0
    rm.model.zero_grad()
    rm.model.eval()


def test_save_load_and_rm_spec(rm: RewardModel, tmp_path: Path) -> None:
    rm.save(tmp_path / "rm")
    loaded = load_reward(f"rm:{tmp_path / 'rm'}")
    assert call_reward(loaded, PROMPTS, COMPLETIONS).scores == pytest.approx(
        call_reward(rm, PROMPTS, COMPLETIONS).scores, abs=1e-5)


def test_multi_attribute_head_uses_helpsteer2_weights(tmp_path: Path) -> None:
    rm5 = RewardModel.from_backbone("tiny-random", num_labels=5)
    res = call_reward(rm5, PROMPTS[:2], COMPLETIONS[:2])
    row = res.attributes[0]
    assert list(row) == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    want = 0.65 * row["helpfulness"] + 0.8 * row["correctness"] + 0.45 * row["coherence"] + \
        0.55 * row["complexity"] - 0.4 * row["verbosity"]
    assert res.scores[0] == pytest.approx(want, abs=1e-5)


def test_principles_and_raw_text() -> None:
    msgs = with_principles("Hi", ["Be honest.", "Be brief."])
    assert msgs[0]["role"] == "system" and "- Be honest." in msgs[0]["content"] and msgs[1]["content"] == "Hi"
    merged = with_principles([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], "Be kind.")
    assert merged[0]["content"].endswith("\n\nS") and len(merged) == 2
    a = RewardModel.from_backbone("tiny-random", principles="Be honest.")
    b = RewardModel.from_backbone("tiny-random")
    assert call_reward(a, ["Hi"], ["Hello"]).scores != call_reward(b, ["Hi"], ["Hello"]).scores
    raw = RewardModel.from_backbone("tiny-random", raw_text=True)  # ReMoDetect: the text alone
    assert raw.encode("ignored prompt", "Some text") == raw.encode(None, "Some text")


def test_implicit_dpo_reward() -> None:
    policy, tok = load_model("tiny-random", seed=1)
    reference, _ = load_model("tiny-random", seed=2)
    r = implicit_dpo_reward(policy, reference, tok, beta=0.5, batch_size=2)
    res = call_reward(r, PROMPTS, COMPLETIONS)
    for s, a in zip(res.scores, res.attributes, strict=True):
        assert s == pytest.approx(0.5 * (a["policy_logp"] - a["reference_logp"]), abs=1e-5)
    assert call_reward(implicit_dpo_reward(policy, policy, tok), PROMPTS, COMPLETIONS).scores == [0.0] * 3
    single = call_reward(r, [PROMPTS[2]], [COMPLETIONS[2]]).scores[0]
    assert single == pytest.approx(res.scores[2], abs=1e-4)
