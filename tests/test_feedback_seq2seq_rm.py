"""Seq2seq reward model → token-level rewards (spec wave2_feedback_safety.md §3.4 worked numbers; §3.5: the
one-forward extraction equals the RM's greedy decoding up to the divergence; 1:1 alignment with policy tokens;
the token rewards reach online RL's scoring), and build → train → `seq2seq:DIR` on tiny-random."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.cli import main
from alignkit.data.records import PairwiseExample, PromptExample
from alignkit.data.tokenize import encode_prompt
from alignkit.objectives import get_objective
from alignkit.objectives.base import LogProbs
from alignkit.rewards.registry import load_reward
from alignkit.rewards.seq2seq import (
    Seq2SeqReward,
    ppo_token_rewards,
    seq2seq_rm_records,
    source_prompt,
    token_rewards,
)
from alignkit.rl.advantages import grpo_advantages
from alignkit.rl.rollout import score


def test_rm_loss_worked_is_twice_per_sequence_sft() -> None:
    import math
    corr, ident = [0.6, 0.3, 0.8], [0.9, 0.95, 0.85]
    lp = LogProbs(policy=torch.tensor([[sum(map(math.log, corr))], [sum(map(math.log, ident))]], dtype=torch.float64),
                  lengths=torch.tensor([[3.0], [3.0]], dtype=torch.float64))
    loss, _ = get_objective("sft")(lp, per_sequence=True)
    assert 2 * float(loss) == pytest.approx(0.752372, abs=1e-6)


def test_token_rewards_worked() -> None:
    y, a = list("ABCDE"), list("ABXDY")
    ra = token_rewards(a, y)
    assert ra == [1, 1, -1, 1, -1] and sum(ra) / 5 == pytest.approx(0.2)
    assert token_rewards(a, y, variant="B") == [1, 1, -1, 0, -1]
    ppo = ppo_token_rewards(ra, [-0.2, -0.5, -1.0, -0.3, -0.9], [-0.25, -0.4, -1.4, -0.3, -0.6])
    assert ppo == pytest.approx([0.9975, 1.005, -1.02, 1.0, -0.985]) and sum(ppo) == pytest.approx(0.9975)
    # GRPO on the sequence means (alignkit's GRPO uses the sample std, the spec's second variant).
    adv = grpo_advantages(torch.tensor([0.6, -0.2, 1.0, 0.2]), 4)
    assert adv.tolist() == pytest.approx([0.387298, -1.161895, 1.161895, -0.387298], abs=1e-3)


def test_builder_records_orientation() -> None:
    recs = seq2seq_rm_records([PairwiseExample("Q?", "good", "bad")])
    assert [r.metadata["mapping"] for r in recs] == ["correction", "identity"]
    assert "bad" in recs[0].prompt[0]["content"] and recs[0].completion == "good"
    assert "good" in recs[1].prompt[0]["content"] and recs[1].completion == "good"


@pytest.fixture(scope="module")
def tiny():
    from alignkit.models import load_model

    return load_model("tiny-random:1:32")


def test_one_forward_equals_greedy_decoding(tiny) -> None:
    model, tok = tiny
    reward = Seq2SeqReward(model, tok)
    prompt, text = "Say something.", "hello there"
    src = torch.tensor([encode_prompt(tok, source_prompt(prompt, text))])
    greedy = model.generate(src, attention_mask=torch.ones_like(src), max_new_tokens=6, do_sample=False,
                            pad_token_id=tok.pad_token_id)[0, src.shape[1]:].tolist()
    # The RM's own greedy continuation earns +1 everywhere (it would have written every token itself) ...
    assert reward.score_tokens([prompt], [text], [greedy]) == [[1.0] * len(greedy)]
    # ... and a sample that leaves it at position 3 diverges exactly there.
    off = greedy[:3] + [(greedy[3] + 1) % len(tok)] + greedy[4:]
    r = reward.score_tokens([prompt], [text], [off])[0]
    assert r[:3] == [1.0, 1.0, 1.0] and r[3] == -1.0 and len(r) == len(off)


def test_rollout_score_passes_token_ids(tiny) -> None:
    model, tok = tiny
    reward = Seq2SeqReward(model, tok, reduce="sum")
    ids = [[tok.eos_token_id], [5, 6, tok.eos_token_id]]
    got = score(reward, [PromptExample("Hi")], ["", "xy"], 2, ids)
    assert [len(t) for t in got.token_scores] == [1, 3]  # 1:1 with the sampled tokens
    assert got.scores == [sum(t) for t in got.token_scores]
    reward.check_vocabulary(tok)


def test_cli_build_train_and_load(tmp_path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                             for i in range(2)))
    sft = tmp_path / "s2s.jsonl"
    assert main(["data", "build", "--from", "seq2seq-rm", "--pairwise", str(pairs), "--out", str(sft)]) == 0
    assert len(sft.read_text().splitlines()) == 4
    run = tmp_path / "rm"
    assert main(["train", "--model", "tiny-random:1:32", "--data", str(sft), "--objective", "sft",
                 "--output-dir", str(run), "--set", "max_steps=1", "--set", "batch_size=2",
                 "--set", "objective_args.per_sequence=true", "--set", "progress=false"]) == 0
    reward = load_reward(f"seq2seq:{run / 'final'}:B")
    res = reward(["Q0?"], ["good 0"])
    assert reward.variant == "B" and len(res.token_scores[0]) >= 2
    assert -1.0 <= res.scores[0] <= 1.0
