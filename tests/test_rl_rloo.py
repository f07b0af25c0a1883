"""RLOO as in Ahmadian et al. 2024 / TRL's RLOOTrainer (whole completion = one action, KL in the reward), its
GRPO-style sibling `grpo_loo`, and log-probs at the rollout temperature (issue 13, items 1 and 2)."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.data.records import PromptExample
from alignkit.errors import ConfigError
from alignkit.models import load_model
from alignkit.rewards.base import FunctionReward
from alignkit.rl.advantages import compute_advantages
from alignkit.rl.config import online_args
from alignkit.rl.logps import tempered_logps
from alignkit.rl.losses import policy_loss, sequence_kl, sequence_policy_loss
from alignkit.rl.rollout import collate
from alignkit.rl.trainer import OnlineTrainer
from alignkit.train.config import TrainConfig

# two completions of lengths 3 and 1 (row 1 is padded)
MASK = torch.tensor([[True, True, True], [True, False, False]])
ADV = torch.tensor([1.0, -1.0])


def leaf_logps() -> torch.Tensor:
    return torch.tensor([[-1.0, -2.0, -0.5], [-0.7, -9.0, -9.0]], requires_grad=True)


def test_rloo_gives_every_token_of_a_completion_its_full_advantage() -> None:
    # Sequence-level REINFORCE at ρ = 1: d loss / d log π(y_i,t) = −Â_i / N for every token, whatever |y_i|.
    logps = leaf_logps()
    sequence_policy_loss(logps, ADV, MASK).loss.backward()
    assert torch.allclose(logps.grad, torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.0, 0.0]]))


def test_grpo_loo_keeps_the_per_token_mean_so_long_completions_get_less_per_token() -> None:
    # GRPO's sequence aggregation: −Â_i / (N · |y_i|): 1/6 per token of the 3-token completion, not 1/2.
    logps = leaf_logps()
    policy_loss(logps, ADV, MASK, beta=0.0, aggregation="sequence").loss.backward()
    assert torch.allclose(logps.grad, torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [0.5, 0.0, 0.0]]))


def test_rloo_ratio_is_on_the_summed_sequence_log_prob() -> None:
    # Each token's ratio e^0.1 = 1.105 is inside [0.8, 1.2]; the completion's ratio e^0.3 = 1.350 is not.
    old = torch.tensor([[-1.1, -2.1, -0.6]])
    logps = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    out = sequence_policy_loss(logps, torch.tensor([2.0]), mask, old_logps=old, epsilon_low=0.2)
    assert float(out.loss.detach()) == pytest.approx(-1.2 * 2.0)  # clipped at 1 + ε
    assert out.metrics["clip_ratio_high"] == 1.0 and out.metrics["ratio_mean"] == pytest.approx(math.exp(0.3))
    out.loss.backward()
    assert logps.grad.abs().max() == 0  # the clipped branch carries no gradient
    per_token = policy_loss(logps.detach(), torch.tensor([2.0]), mask, old_logps=old, beta=0.0)
    assert per_token.metrics["clip_ratio"] == 0.0  # GRPO's per-token ratio would not clip here


def test_rloo_subtracts_the_sequence_kl_from_the_reward_before_the_leave_one_out_baseline() -> None:
    # KL_i = Σ_t (log π_old − log π_ref) over the real tokens (padding ignored): [2, 0, 0, −1].
    logps = torch.tensor([[-1.0, -1.0], [-2.0, 5.0], [-3.0, 5.0], [-1.0, -1.0]])
    ref = torch.tensor([[-2.0, -2.0], [-2.0, -7.0], [-3.0, -7.0], [-0.5, -0.5]])
    mask = torch.tensor([[True, True], [True, False], [True, False], [True, True]])
    kl = sequence_kl(logps, ref, mask)
    assert kl.tolist() == pytest.approx([2.0, 0.0, 0.0, -1.0])
    # β = 0.5: r − β·KL = [1, 0, 0, 2] − [1, 0, 0, −0.5] = [0, 0, 0, 2.5]; baselines (2.5 − r_i)/3.
    adv = compute_advantages(torch.tensor([1.0, 0.0, 0.0, 2.0]), 4, "rloo", seq_kl=kl, beta=0.5)
    assert adv.tolist() == pytest.approx([-2.5 / 3, -2.5 / 3, -2.5 / 3, 2.5])
    # grpo_loo: leave-one-out on the raw rewards, its KL stays in the loss
    loo = compute_advantages(torch.tensor([1.0, 0.0, 0.0, 2.0]), 4, "grpo_loo", seq_kl=kl, beta=0.5)
    assert loo.tolist() == pytest.approx([1 - 2 / 3, -1.0, -1.0, 2 - 1 / 3])


def test_rloo_refuses_a_token_aggregation() -> None:
    with pytest.raises(ConfigError, match="grpo_loo"):
        online_args("rloo", {"loss_type": "bnpo"})
    assert online_args("grpo_loo", {}).resolved_loss_type("grpo_loo") == "sequence"


# ---------------------------------------------------------------- item 2: the rollout temperature
def naive_logps_at(model, ids: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Independent reference: full logits, divided by T, full log-softmax, gathered at the labels."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1].float()
    lp = torch.log_softmax(logits / temperature, dim=-1)
    tgt = labels[:, 1:]
    return lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (tgt != -100)


def test_sampled_token_log_probs_use_the_sampling_temperature() -> None:
    model, _ = load_model("tiny-random", seed=0)
    tb = collate([[5, 6, 7]], [[8, 9, 10, 11]], pad_id=0)
    with torch.no_grad():
        _, _, tok05, mask = tempered_logps(model, tb.input_ids, tb.attention_mask, tb.labels, True, 0.5)
        _, _, tok1, _ = tempered_logps(model, tb.input_ids, tb.attention_mask, tb.labels, True, 1.0)
    want = naive_logps_at(model, tb.input_ids, tb.labels, 0.5)
    assert mask.sum() == 4
    assert torch.allclose(tok05, want, atol=1e-5)
    assert not torch.allclose(tok05, tok1, atol=1e-3)  # T matters: T = 1 logits are a different distribution


def test_trainer_policy_and_reference_log_probs_are_at_the_rollout_temperature(tmp_path) -> None:
    model, tok = load_model("tiny-random", seed=0)
    cfg = TrainConfig(model="tiny-random", objective="rloo", output_dir=str(tmp_path), batch_size=1, max_steps=1,
                      beta=0.05, reference="separate", progress=False,
                      objective_args={"temperature": 0.5, "num_generations": 2, "max_new_tokens": 2})
    reward = FunctionReward(lambda prompts, completions, **_: [0.0] * len(completions), name="zero")
    trainer = OnlineTrainer(cfg, reward=reward, prompts=[PromptExample("Hi")], model=model, tokenizer=tok,
                            log=lambda _m: None)
    tb = collate([[5, 6, 7]], [[8, 9, 10]], pad_id=0)
    want = naive_logps_at(model, tb.input_ids, tb.labels, 0.5)
    with torch.no_grad():
        policy, _ = trainer._token_logps(trainer.policy, tb)
    ref = trainer._reference_logps(tb)
    assert ref is not None
    assert torch.allclose(policy, want, atol=1e-5)
    assert torch.allclose(ref, want, atol=1e-5)  # the separate reference is the same tiny-random weights
