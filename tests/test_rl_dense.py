"""Dense token rewards in online RL (issue 19 item 3; spec wave2_feedback_safety.md §3.3, rl.dense): the Reward
protocol's `token_scores` reach GRPO / GRPO-LOO / RLOO, and `token_rewards: dense` gives every token its own
advantage Â_{i,t} = Σ_{s≥t} r̃_{i,s} (DeepSeekMath's process-supervision GRPO with one step per token). The
numbers below are worked by hand; the tiny-random runs check that the loss receives exactly those per-token
advantages and that a dense reward is never summed back to one number per completion."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.data.records import PromptExample
from alignkit.errors import ConfigError, RewardError
from alignkit.models import load_model
from alignkit.rewards.base import FunctionReward, RewardResult, check_result
from alignkit.rl import trainer as trainer_mod
from alignkit.rl.advantages import grpo_advantages
from alignkit.rl.dense import (
    dense_advantages,
    dense_grpo_advantages,
    dense_loo_advantages,
    micro_advantages,
    returns_to_go,
)
from alignkit.rl.losses import policy_loss, sequence_policy_loss
from alignkit.rl.trainer import OnlineTrainer
from alignkit.train.config import TrainConfig

# the spec's §3.4 variant-A token rewards, and a shorter second sample of the same group
A = [1.0, 1.0, -1.0, 1.0, -1.0]
B = [-1.0, -1.0, 1.0]


def rows(adv):
    return [[round(float(v), 6) for v in a] for a in adv]


def test_returns_to_go() -> None:
    assert returns_to_go(torch.tensor(A)).tolist() == [1.0, 0.0, -1.0, 0.0, -1.0]


def test_dense_grpo_worked() -> None:
    # R_g = the 8 token rewards: mean 0, unbiased std √(8/7) = 1.069045 (+1e-4); Â = suffix sums of r / 1.069145.
    k = 0.935327
    assert rows(dense_grpo_advantages([A, B], 2)) == [[k, 0.0, -k, 0.0, -k], [-k, 0.0, k]]
    # scale none (Dr. GRPO): only centred (mean 0 here), so Â is the plain return-to-go
    assert rows(dense_grpo_advantages([A, B], 2, scale="none")) == [[1, 0, -1, 0, -1], [-1, 0, 1]]


def test_dense_reward_is_not_summed_back_to_a_scalar() -> None:
    # Equal sums, opposite placement: one number per completion (either reduction) cannot tell them apart ...
    early, late = [1.0, -1.0], [-1.0, 1.0]
    assert grpo_advantages(torch.tensor([sum(early), sum(late)]), 2).tolist() == [0.0, 0.0]
    # ... per-token advantages do: the second token is penalised in `early` and rewarded in `late`
    # (std of [1, −1, −1, 1] = √(4/3) = 1.154701; 1/1.154801 = 0.865950).
    adv = rows(dense_grpo_advantages([early, late], 2))
    assert adv == [[0.0, -0.86595], [0.0, 0.86595]]


def test_dense_leave_one_out_worked() -> None:
    # A's baseline is B's mean token reward (−1/3), B's is A's (0.2); then returns-to-go.
    assert rows(dense_loo_advantages([A, B], 2)) == [[2.666667, 1.333333, 0.0, 0.666667, -0.666667],
                                                     [-1.6, -0.4, 0.8]]
    # RLOO: r' = r − β·(log π_old − log π_ref) per token (β 0.5): A' = [0.9, 1, −1, 1, −1], B' = [−1, −1, 1.2]
    kl = [[0.2, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -0.4]]
    got = rows(dense_advantages([A, B], 2, "rloo", token_kl=kl, beta=0.5))
    assert got == [[2.233333, 1.066667, -0.2, 0.533333, -0.733333], [-1.34, -0.16, 1.02]]
    # a group whose token rewards are all equal carries no signal
    assert rows(dense_grpo_advantages([[1.0, 1.0], [1.0]], 2)) == [[0.0, 0.0], [0.0]]


def test_micro_advantages_land_on_the_sampled_tokens_in_order() -> None:
    mask = torch.tensor([[False, True, True, False], [False, False, True, False]])  # prompt, tokens, padding
    out = micro_advantages([torch.tensor([9.0]), torch.tensor([1.0, 2.0]), torch.tensor([3.0])], [1, 2], mask)
    assert out.tolist() == [[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 3.0, 0.0]]
    with pytest.raises(ConfigError, match="token advantages"):
        micro_advantages([torch.tensor([1.0])], [0], mask[:1])
    assert micro_advantages(torch.tensor([5.0, 6.0, 7.0]), [2, 0], mask).tolist() == [7.0, 5.0]


def test_per_token_advantages_give_per_token_gradients() -> None:
    # ρ = 1, token aggregation over 3 tokens: ∂loss/∂log π_{i,t} = −Â_{i,t} / 3
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    adv = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    policy_loss(logps, adv, mask, beta=0.0).loss.backward()
    assert logps.grad.flatten().tolist() == pytest.approx([-2 / 3, 1 / 3, -0.5 / 3, 0.0])
    with pytest.raises(ConfigError, match="one advantage per completion"):
        sequence_policy_loss(logps, adv, mask)


def test_token_scores_are_validated() -> None:
    ok = check_result("t", RewardResult([0.5], token_scores=[[1, 0]]), 1)
    assert ok.token_scores == [[1.0, 0.0]]
    with pytest.raises(RewardError, match="one list per completion"):
        check_result("t", RewardResult([0.5, 0.5], token_scores=[[1.0]]), 2)
    with pytest.raises(RewardError, match="non-finite token score"):
        check_result("t", RewardResult([0.5], token_scores=[[math.nan]]), 1)


class ParityTokens:
    """A token reward: +1 on even token ids, −1 on odd ones; scores are the mean."""

    name = "parity"
    token_level = True

    def __call__(self, prompts, completions, completion_token_ids=None, **_):
        toks = [[1.0 if t % 2 == 0 else -1.0 for t in ids] for ids in completion_token_ids]
        return RewardResult([sum(t) / max(len(t), 1) for t in toks], token_scores=toks)


def _trainer(tmp_path, objective, reward, token_rewards="dense", beta=0.0):
    model, tok = load_model("tiny-random", seed=0)
    cfg = TrainConfig(model="tiny-random", objective=objective, output_dir=str(tmp_path), batch_size=1, grad_accum=2,
                      max_steps=1, beta=beta, reference="separate" if beta else "auto", progress=False,
                      objective_args={"num_generations": 4, "max_new_tokens": 6, "token_rewards": token_rewards})
    prompts = [PromptExample("Hi"), PromptExample("Tell me a story")]
    return OnlineTrainer(cfg, reward=reward, prompts=prompts, model=model, tokenizer=tok, log=lambda _m: None)


@pytest.mark.parametrize("objective", ["grpo", "rloo"])
def test_trainer_feeds_the_loss_per_token_advantages(tmp_path, monkeypatch, objective) -> None:
    seen = []

    def spy(logps, adv, mask, **kw):
        seen.append((adv.detach().clone(), mask.clone()))
        return policy_loss(logps, adv, mask, **kw)

    monkeypatch.setattr(trainer_mod, "policy_loss", spy)
    tr = _trainer(tmp_path, objective, ParityTokens(), beta=0.05 if objective == "rloo" else 0.0)
    made = []
    real = tr._advantages

    def capture(ro, prep):
        made.append((ro, prep))
        return real(ro, prep)

    monkeypatch.setattr(tr, "_advantages", capture)
    tr.train()
    (ro, prep), = made
    tokens = [[1.0 if t % 2 == 0 else -1.0 for t in s.token_ids] for s in ro.samples]
    assert ro.token_rewards == tokens
    want = dense_advantages(tokens, 4, objective, token_kl=prep.token_kl, beta=tr.beta)
    if objective == "rloo":
        assert prep.token_kl is not None and [len(k) for k in prep.token_kl] == [len(t) for t in tokens]
    got = [a[m].tolist() for adv, mask in seen for a, m in zip(adv, mask, strict=True)]
    assert len(seen) == 2 and all(adv.dim() == 2 for adv, _ in seen)  # one [n, T] tensor per micro-batch
    assert got == [pytest.approx(w.tolist(), abs=1e-6) for w in want]
    # within a completion the advantage changes from token to token wherever its reward does
    varied = [a for a, t in zip(got, tokens, strict=True) if len(set(t)) > 1]
    assert varied and all(len({round(v, 6) for v in a}) > 1 for a in varied)
    lines = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert lines[0]["advantage"] == pytest.approx(float(want[0][0]), abs=1e-6)


def test_sequence_mode_broadcasts_and_dense_needs_token_scores(tmp_path, monkeypatch) -> None:
    seen = []

    def spy(logps, adv, mask, **kw):
        seen.append(adv.dim())
        return policy_loss(logps, adv, mask, **kw)

    monkeypatch.setattr(trainer_mod, "policy_loss", spy)
    _trainer(tmp_path / "seq", "grpo", ParityTokens(), token_rewards="sequence").train()
    assert seen and set(seen) == {1}
    scalar = FunctionReward(lambda prompts, completions, **_: [1.0] * len(completions), name="ones")
    with pytest.raises(RewardError, match="token_rewards=dense needs a reward that returns per-token rewards"):
        _trainer(tmp_path / "dense", "grpo", scalar).train()
    with pytest.raises(ConfigError, match="token_rewards must be sequence or dense"):
        _trainer(tmp_path / "bad", "grpo", scalar, token_rewards="tokens")


def test_cli_grpo_with_a_seq2seq_rm_as_dense_reward(tmp_path) -> None:
    model, tok = load_model("tiny-random:1:32", seed=1)
    rm = tmp_path / "rm"
    model.save_pretrained(rm)
    tok.save_pretrained(rm)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(2)))
    run = tmp_path / "run"
    assert main(["train", "--objective", "grpo", "--model", "tiny-random:1:32", "--data", str(prompts),
                 "--output-dir", str(run), "--set", "max_steps=1", "--set", "batch_size=2", "--set", "progress=false",
                 "--set", f"objective_args.reward=seq2seq:{rm}", "--set", "objective_args.token_rewards=dense",
                 "--set", "objective_args.num_generations=2", "--set", "objective_args.max_new_tokens=4"]) == 0
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 1 and -1.0 <= rec["reward"] <= 1.0 and rec["advantage_abs"] >= 0.0
