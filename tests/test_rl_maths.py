"""GRPO / RLOO maths on hand-computed groups (spec objectives.md §9.1)."""

from __future__ import annotations

import pytest
import torch

from alignkit.errors import ConfigError
from alignkit.rl.advantages import group_stats, grpo_advantages, rloo_advantages
from alignkit.rl.losses import aggregate, k3_kl, policy_loss

SPEC_REWARDS = torch.tensor([0.1, 0.3, 0.2, 0.0])
SPEC_ADV = [-0.3869986, 1.1609957, 0.3869986, -1.1609957]
SPEC_LENS = [3, 2, 4, 1]


def spec_batch(lens: list[int] = SPEC_LENS) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(lens)
    mask = torch.zeros(len(lens), T, dtype=torch.bool)
    for i, n in enumerate(lens):
        mask[i, :n] = True
    logps = torch.log(torch.rand(len(lens), T, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.2)
    return logps, mask


def test_grpo_advantages_match_spec_worked_example() -> None:
    adv = grpo_advantages(SPEC_REWARDS, group_size=4)
    assert adv.tolist() == pytest.approx(SPEC_ADV, abs=1e-6)


def test_std_normalisation_off_is_dr_grpo_centering() -> None:
    adv = grpo_advantages(SPEC_REWARDS, group_size=4, scale="none")
    assert adv.tolist() == pytest.approx([-0.05, 0.15, 0.05, -0.15], abs=1e-7)


def test_identical_rewards_give_zero_advantage_and_no_nan() -> None:
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.7, 0.7, 0.7])
    for scale in ("group", "none"):
        adv = grpo_advantages(rewards, group_size=3, scale=scale)
        assert torch.equal(adv, torch.zeros(6))
    assert rloo_advantages(rewards, group_size=3).abs().max() == 0
    assert group_stats(rewards, 3)["frac_zero_std_groups"] == 1.0


def test_groups_are_independent_and_prompt_major() -> None:
    rewards = torch.cat([SPEC_REWARDS, SPEC_REWARDS + 10.0])
    adv = grpo_advantages(rewards, group_size=4)
    assert adv[:4].tolist() == pytest.approx(SPEC_ADV, abs=1e-6)
    assert adv[4:].tolist() == pytest.approx(SPEC_ADV, abs=1e-5)


def test_rloo_leave_one_out_baseline() -> None:
    # r = [1, 0, 0, 2]: baselines (0+0+2)/3, (1+0+2)/3, (1+0+2)/3, (1+0+0)/3
    adv = rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 2.0]), group_size=4)
    assert adv.tolist() == pytest.approx([1 - 2 / 3, -1.0, -1.0, 2 - 1 / 3])
    # Identity: RLOO = G/(G-1) × the centred reward.
    assert adv.tolist() == pytest.approx((4 / 3 * grpo_advantages(torch.tensor([1.0, 0, 0, 2]), 4, "none")).tolist())


def test_group_size_one_is_rejected() -> None:
    with pytest.raises(ConfigError, match="group_size"):
        grpo_advantages(torch.tensor([1.0, 2.0]), group_size=1)
    with pytest.raises(ConfigError, match="multiple"):
        rloo_advantages(torch.tensor([1.0, 2.0, 3.0]), group_size=2)


def test_grpo_bnpo_first_step_loss_matches_spec() -> None:
    logps, mask = spec_batch()
    adv = grpo_advantages(SPEC_REWARDS, 4)
    out = policy_loss(logps, adv, mask, ref_logps=logps.clone(), beta=0.04, aggregation="bnpo")
    assert float(out.loss) == pytest.approx(-0.1547994, abs=1e-6)
    seq = policy_loss(logps, adv, mask, ref_logps=logps.clone(), beta=0.04, aggregation="grpo")
    assert float(seq.loss) == pytest.approx(0.0, abs=1e-6)
    dr = policy_loss(logps, adv, mask, ref_logps=logps.clone(), beta=0.04, aggregation="dr_grpo",
                     max_completion_length=8)
    expected = -sum(a * n for a, n in zip(SPEC_ADV, SPEC_LENS, strict=True)) / (4 * 8)
    assert float(dr.loss) == pytest.approx(expected, abs=1e-6)
    assert out.metrics["kl"] == 0.0 and out.metrics["clip_ratio"] == 0.0 and out.metrics["ratio_mean"] == 1.0


def test_first_step_gradient_is_advantage_weighted_score_function() -> None:
    logps, mask = spec_batch()
    logps.requires_grad_(True)
    adv = grpo_advantages(SPEC_REWARDS, 4)
    policy_loss(logps, adv, mask, beta=0.0, aggregation="token").loss.backward()
    expected = -(adv.unsqueeze(1) * mask) / mask.sum()
    assert torch.allclose(logps.grad, expected, atol=1e-7)


def test_clipping_binds_only_in_the_direction_that_helps() -> None:
    old = torch.zeros(4, 1)
    mask = torch.ones(4, 1, dtype=torch.bool)
    # ratios 1.5 (A>0: clipped to 1.2), 1.5 (A<0: unclipped, pessimistic), 0.5 (A<0: clipped to 0.8), 0.5 (A>0)
    logps = torch.log(torch.tensor([[1.5], [1.5], [0.5], [0.5]])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    out = policy_loss(logps, adv, mask, old_logps=old, beta=0.0, epsilon_low=0.2, aggregation="sequence")
    assert float(out.loss.detach()) == pytest.approx((-1.2 + 1.5 + 0.8 - 0.5) / 4)
    out.loss.backward()
    # Clipped tokens carry no gradient; the others carry -A·ρ/N.
    assert logps.grad.flatten().tolist() == pytest.approx([0.0, 1.5 / 4, 0.0, -0.5 / 4])
    assert out.metrics["clip_ratio_high"] == 0.25 and out.metrics["clip_ratio_low"] == 0.25


def test_clip_higher_widens_the_upper_bound() -> None:
    logps = torch.log(torch.tensor([[1.25]]))
    out = policy_loss(logps, torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool), old_logps=torch.zeros(1, 1),
                      beta=0.0, epsilon_low=0.2, epsilon_high=0.28)
    assert float(out.loss) == pytest.approx(-1.25)
    assert out.metrics["clip_ratio"] == 0.0


def test_k3_is_non_negative_and_zero_at_reference() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(50, generator=g), torch.randn(50, generator=g)
    assert (k3_kl(a, b) >= 0).all()
    assert torch.equal(k3_kl(a, a), torch.zeros(50))
    # k3 = e^d − d − 1 with d = ref − θ
    assert float(k3_kl(torch.tensor(0.0), torch.tensor(1.0))) == pytest.approx(torch.e - 2)


def test_kl_term_is_weighted_by_beta() -> None:
    logps, mask = spec_batch()
    ref = logps - 0.3
    adv = torch.zeros(4)
    out = policy_loss(logps, adv, mask, ref_logps=ref, beta=0.5, aggregation="token")
    kl = float(torch.exp(torch.tensor(-0.3)) + 0.3 - 1)
    assert float(out.loss) == pytest.approx(0.5 * kl, rel=1e-5)
    assert out.metrics["kl"] == pytest.approx(kl, rel=1e-5)
    with pytest.raises(ConfigError, match="reference"):
        policy_loss(logps, adv, mask, beta=0.1)


def test_micro_batches_with_global_normalizer_sum_to_full_batch_loss() -> None:
    logps, mask = spec_batch()
    adv = grpo_advantages(SPEC_REWARDS, 4)
    for agg, norm in (("token", float(mask.sum())), ("sequence", 4.0), ("dr_grpo", 4.0 * 6)):
        full = float(aggregate(-logps * adv[:, None], mask, agg, max_completion_length=6))
        parts = sum(float(aggregate(-logps[s] * adv[s, None], mask[s], agg, normalizer=norm))
                    for s in (slice(0, 1), slice(1, 4)))
        assert parts == pytest.approx(full, abs=1e-6), agg


def test_bad_aggregation_and_shapes_are_reported() -> None:
    logps, mask = spec_batch()
    with pytest.raises(ConfigError, match="aggregation"):
        aggregate(logps, mask, "mean")
    with pytest.raises(ConfigError, match="advantages"):
        policy_loss(logps, torch.zeros(3), mask, beta=0.0)
