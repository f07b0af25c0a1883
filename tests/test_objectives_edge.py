"""Edge cases (spec §11 tie table), gradient sanity (stop-gradients of §11.4), stateful BCO, validation."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from alignkit.errors import ConfigError
from alignkit.objectives import (
    OBJECTIVES,
    LogProbs,
    ObjectiveState,
    describe_objectives,
    get_objective,
    is_stateful,
)
from alignkit.objectives.base import ObjectiveSpec

D = torch.float64
LOG2 = math.log(2)


def t(x: object, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=D, requires_grad=grad)


def loss(name: str, lp: LogProbs, **kw: object) -> torch.Tensor:
    return get_objective(name)(lp, **kw)[0]


def val(name: str, lp: LogProbs, **kw: object) -> float:
    return float(loss(name, lp, **kw).detach())


# ---- pairwise ----------------------------------------------------------------------------------------------

def identical_pair() -> LogProbs:
    return LogProbs(policy=t([[-7.0, -7.0]], grad=True), lengths=t([[3.0, 3.0]]), reference=t([[-6.0, -6.0]]))


@pytest.mark.parametrize("name,kw", [("dpo", {}), ("dpo", {"label_smoothing": 0.2}), ("robust", {})])
def test_identical_pair_gives_log2_and_zero_net_gradient(name: str, kw: dict) -> None:
    lp = identical_pair()
    value = loss(name, lp, **kw)
    assert float(value.detach()) == pytest.approx(LOG2, abs=1e-9)
    value.backward()
    assert float(lp.policy.grad.sum()) == pytest.approx(0.0, abs=1e-12)  # the shared sequence's grads cancel


def test_ipo_identical_pair_constant_loss() -> None:
    lp = identical_pair()
    value = loss("ipo", lp, beta=0.1)
    assert float(value.detach()) == pytest.approx(25.0)
    value.backward()
    assert float(lp.policy.grad.sum()) == pytest.approx(0.0, abs=1e-12)


def test_orpo_tie_leaves_only_nll_gradient() -> None:
    lp = LogProbs(policy=t([[-6.0, -6.0]], grad=True), lengths=t([[3.0, 3.0]]))
    _, m = get_objective("orpo")(lp, beta=0.1)
    assert m["or_loss"] == pytest.approx(LOG2, abs=1e-9)


def test_epsilon_zero_reduces_to_dpo() -> None:
    lp = LogProbs(policy=t([[-3.0, -5.0], [-4.0, -2.0]]), lengths=t([[2.0, 2.0]] * 2),
                  reference=t([[-3.5, -4.0], [-4.0, -3.0]]))
    dpo = val("dpo", lp)
    assert val("dpo", lp, label_smoothing=0.0) == pytest.approx(dpo)
    assert val("robust", lp, label_smoothing=0.0) == pytest.approx(dpo)


def test_rdpo_can_be_negative_and_is_not_clipped() -> None:
    lp = LogProbs(policy=t([[0.0, -200.0]]), lengths=t([[1.0, 1.0]]), reference=t([[0.0, 0.0]]))
    assert val("robust", lp, label_smoothing=0.4) < 0


def test_robust_rejects_epsilon_half() -> None:
    with pytest.raises(ConfigError, match="label_smoothing"):
        loss("robust", identical_pair(), label_smoothing=0.5)


def test_reference_free_dpo_ignores_reference() -> None:
    lp = LogProbs(policy=t([[-3.0, -5.0]]), lengths=t([[2.0, 2.0]]))
    assert val("dpo", lp, reference_free=True) == pytest.approx(-math.log(1 / (1 + math.exp(-0.2))))


def test_sft_weight_adds_mean_token_nll_of_chosen() -> None:
    lp = LogProbs(policy=t([[-10.0, -12.0], [-4.0, -1.0]]), lengths=t([[5.0, 4.0], [2.0, 1.0]]),
                  reference=t([[-11.0, -11.5], [-4.0, -1.0]]))
    for name in ("dpo", "ipo", "hinge", "nca", "apo_zero", "sppo_hard", "discopop", "simpo", "slic", "robust"):
        base = val(name, lp)
        with_sft, m = get_objective(name)(lp, sft_weight=0.5)
        assert float(with_sft) == pytest.approx(base + 0.5 * (2.0 + 2.0) / 2), name
        assert m["nll_loss"] == pytest.approx(2.0)


def _outlier_batch(n: int = 2000, x: float = 2000.0) -> LogProbs:
    """h = [0]·(n−1) + [x]: the outlier's Gaussian weight exp(−½z²), z = (n−1)/√n ≈ 44.7, underflows to exactly 0
    in fp64, so every 80 % subsample holds only zeros whatever the generator draws."""
    h = torch.zeros(n, dtype=D)
    h[-1] = x
    pol = torch.stack([h, torch.zeros(n, dtype=D)], dim=1)
    return LogProbs(policy=pol, lengths=torch.ones(n, 2, dtype=D), reference=torch.zeros(n, 2, dtype=D))


def test_mm_dpo_batch_beta_follows_the_released_formula() -> None:
    # β_batch = β·(1 + w·(mean(subsample) − mean(h))) = 0.1·(1 + 0.5·(0 − 1)) = 0.05 (mean(h) = 2000/2000)
    lp = _outlier_batch()
    for seed in (0, 1):
        value, m = get_objective("dpo")(lp, reward_scaling_w=0.5, reward_scaling_mode="batch_beta",
                                        generator=torch.Generator().manual_seed(seed))
        assert m["beta/mean"] == pytest.approx(0.05, abs=1e-12)
        # 1999 pairs at h = 0 give log 2 each; the outlier gives softplus(−0.05·2000) ≈ 0
        assert float(value) == pytest.approx(1999 * LOG2 / 2000, abs=1e-12)


def test_mm_dpo_batch_beta_clamps_at_1e_3() -> None:
    # w = 2: 0.1·(1 + 2·(0 − 1)) = −0.1 → clamped to 1e-3
    value, m = get_objective("dpo")(_outlier_batch(), reward_scaling_w=2.0, reward_scaling_mode="batch_beta")
    assert m["beta/mean"] == pytest.approx(1e-3, abs=1e-15)
    assert float(value) == pytest.approx((1999 * LOG2 + math.log1p(math.exp(-2.0))) / 2000, abs=1e-12)


def test_mm_dpo_batch_beta_subsample_is_drawn_from_the_batch() -> None:
    # h = [−1, 0, 1]: mean 0; two of three are drawn, so the subsample mean is −½, 0 or ½
    lp = LogProbs(policy=t([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]), lengths=torch.ones(3, 2, dtype=D),
                  reference=torch.zeros(3, 2, dtype=D))
    seen = set()
    for seed in range(20):
        _, m = get_objective("dpo")(lp, reward_scaling_w=0.5, reward_scaling_mode="batch_beta",
                                    generator=torch.Generator().manual_seed(seed))
        seen.add(round(m["beta/mean"], 9))
    assert seen <= {0.075, 0.1, 0.125} and len(seen) >= 2


def test_mm_dpo_per_pair_needs_margins() -> None:
    with pytest.raises(ConfigError, match="margins"):
        loss("dpo", identical_pair(), reward_scaling_w=0.5)


def test_reference_gets_no_gradient() -> None:
    ref = t([[-11.0, -11.5]], grad=True)
    lp = LogProbs(policy=t([[-10.0, -12.0]], grad=True), lengths=t([[5.0, 4.0]]), reference=ref)
    loss("dpo", lp).backward()
    assert ref.grad is None


def test_wrong_k_and_missing_reference_are_clear_errors() -> None:
    lp = LogProbs(policy=t([[-1.0, -2.0, -3.0]]), lengths=t([[1.0, 1.0, 1.0]]), reference=t([[0.0, 0.0, 0.0]]))
    with pytest.raises(ConfigError, match="K=2"):
        loss("dpo", lp)
    with pytest.raises(ConfigError, match="reference"):
        loss("ipo", LogProbs(policy=t([[-1.0, -2.0]]), lengths=t([[1.0, 1.0]])))


# ---- stateful BCO -----------------------------------------------------------------------------------------

def unpaired(rho: list[float], labels: list[bool]) -> LogProbs:
    n = len(rho)
    return LogProbs(policy=t([[r] for r in rho]), lengths=t([[1.0]] * n), reference=t([[0.0]] * n),
                    labels=torch.tensor([[lab] for lab in labels]))


def test_bco_running_delta_persists_and_survives_json_checkpoint() -> None:
    assert is_stateful(get_objective("bco")) and is_stateful(get_objective("bco_pair"))
    batches = [unpaired([0.5, -0.3, 0.1], [True, False, False]), unpaired([1.0, -1.0], [True, False]),
               unpaired([0.2], [False])]
    state: dict = {}
    deltas = [get_objective("bco")(b, state=state)[1]["delta"] for b in batches]
    # exact running mean of every reward r = 0.1·ρ seen so far
    seen = [0.05, -0.03, 0.01, 0.1, -0.1, 0.02]
    assert deltas == pytest.approx([sum(seen[:3]) / 3, sum(seen[:5]) / 5, sum(seen) / 6], abs=1e-12)
    # resume: a JSON round-trip of the state after batch 1 continues identically
    state2: dict = {}
    get_objective("bco")(batches[0], state=state2)
    restored = json.loads(json.dumps(state2))
    rest = [get_objective("bco")(b, state=restored)[1]["delta"] for b in batches[1:]]
    assert rest == pytest.approx(deltas[1:], abs=1e-12)


class OtherRank:
    """A fake `accelerator.reduce(t, reduction="sum")` for rank 0 of two: adds the other rank's (sum, count)."""

    def __init__(self, *others: tuple[float, float]) -> None:
        self.others = list(others)
        self.calls = 0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        s, n = self.others[self.calls]
        self.calls += 1
        return t + torch.tensor([s, n], dtype=t.dtype)


def sp(z: float) -> float:
    return math.log1p(math.exp(z))  # softplus: −log σ(−z)


def test_bco_delta_is_reduced_over_processes() -> None:
    # rank 0 holds r = 0.1·[0.5, −0.3, 0.1], rank 1 holds r = 0.1·[1.0, −0.2] (sum 0.08, 2 items):
    # δ = (0.05 − 0.03 + 0.01 + 0.1 − 0.02) / 5 = 0.022 on both, not rank 0's own 0.01
    state = ObjectiveState()
    state.reduce = OtherRank((0.08, 2.0))
    value, m = get_objective("bco")(unpaired([0.5, -0.3, 0.1], [True, False, False]), state=state)
    assert m["delta"] == pytest.approx(0.022, abs=1e-12)
    assert state["delta"]["count"] == pytest.approx(5.0)
    assert float(value) == pytest.approx((sp(-(0.05 - 0.022)) + sp(-0.03 - 0.022) + sp(0.01 - 0.022)) / 3, abs=1e-12)
    assert json.loads(json.dumps(state)) == {"delta": {"mean": pytest.approx(0.022), "count": pytest.approx(5.0)}}


def test_bco_class_mean_reduces_each_class_even_when_a_rank_has_none() -> None:
    # rank 0 has no desirable item; rank 1 contributes desirable r = [0.2] and undesirable r = [0.0, −0.1]
    state = ObjectiveState()
    state.reduce = OtherRank((0.2, 1.0), (-0.1, 2.0))
    _, m = get_objective("bco")(unpaired([-0.4], [False]), state=state, delta_mode="class_mean")
    assert state.reduce.calls == 2  # the empty class still joined the collective (else the ranks would hang)
    assert m["delta"] == pytest.approx(0.5 * (0.2 + (-0.04 - 0.1) / 3), abs=1e-12)


def test_bco_frozen_state_reads_delta_without_moving_it() -> None:
    state = ObjectiveState({"delta": {"mean": 0.3, "count": 7.0}})
    state.reduce, state.frozen = OtherRank(), True  # no reduction may happen: eval shards differ per rank
    _, m = get_objective("bco")(unpaired([0.5, -0.3], [True, False]), state=state)
    assert m["delta"] == pytest.approx(0.3) and state == {"delta": {"mean": 0.3, "count": 7.0}}
    # evaluated before any training step: the batch's own mean, and still nothing stored
    fresh = ObjectiveState()
    fresh.frozen = True
    _, m = get_objective("bco_pair")(LogProbs(policy=t([[0.5, -0.3]]), lengths=t([[1.0, 1.0]]),
                                              reference=t([[0.0, 0.0]])), state=fresh)
    assert m["delta"] == pytest.approx(0.01) and fresh == {}


def test_bco_one_class_batch_still_updates_delta() -> None:
    state: dict = {}
    get_objective("bco")(unpaired([0.4, 0.6], [True, True]), state=state)
    assert state["delta"]["mean"] == pytest.approx(0.05)


def test_bco_class_mean_mode_is_mean_of_class_means() -> None:
    _, m = get_objective("bco")(unpaired([0.5, -0.3, 0.1], [True, False, False]), state={}, delta_mode="class_mean")
    assert m["delta"] == pytest.approx(0.5 * (0.05 + (-0.03 + 0.01) / 2))


def test_bco_pair_single_pair_terms_equal() -> None:
    lp = LogProbs(policy=t([[0.5, -0.3]]), lengths=t([[1.0, 1.0]]), reference=t([[0.0, 0.0]]))
    value, m = get_objective("bco_pair")(lp, state={})
    assert m["delta"] == pytest.approx(0.01)
    assert float(value.detach()) == pytest.approx(2 * -math.log(1 / (1 + math.exp(-0.04))))


def test_kto_refuses_a_batch_of_one() -> None:
    # cycling by one would pair the example with itself: z₀ = max(0, ρ) is its own log-ratio (TRL refuses too)
    lp = unpaired([0.5], [True])
    lp.extras = {"kl_policy": t([0.5]), "kl_reference": t([0.0])}
    with pytest.raises(ConfigError, match="batch_size ≥ 2"):
        get_objective("kto")(lp)


def test_kto_batch_without_desirable_items() -> None:
    lp = unpaired([-0.3, 0.2], [False, False])
    lp.extras = {"kl_policy": t([0.1, 0.1]), "kl_reference": t([0.0, 0.0])}
    value, m = get_objective("kto")(lp)
    assert math.isfinite(float(value.detach())) and "rewards/chosen" not in m


# ---- listwise ---------------------------------------------------------------------------------------------

def lists(s: list[list[float]], psi: list[list[float]], mask: list[list[bool]] | None = None,
          grad: bool = False) -> LogProbs:
    pol = t(s, grad=grad)
    return LogProbs(policy=pol, lengths=torch.ones_like(pol), reference=torch.zeros_like(pol), scores=t(psi),
                    item_mask=None if mask is None else torch.tensor(mask))


LIPO = ("lipo_lambda", "pair_logistic", "pair_hinge", "listmle", "listnet")


@pytest.mark.parametrize("name", LIPO)
def test_single_item_list_is_skipped_with_zero_loss(name: str) -> None:
    lp = lists([[-1.0]], [[1.0]], grad=True)
    value, m = get_objective(name)(lp, beta=1.0)
    assert float(value.detach()) == 0.0 and m["lists/skipped"] == 1.0
    value.backward()  # still attached to the graph
    assert float(lp.policy.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("name", LIPO)
def test_all_equal_scores_give_zero(name: str) -> None:
    assert val(name, lists([[1.0, 3.0, -2.0]], [[0.5, 0.5, 0.5]]), beta=1.0) == 0.0


@pytest.mark.parametrize("name", LIPO)
def test_ragged_list_equals_unpadded_list(name: str) -> None:
    full = val(name, lists([[1.0, 3.0, -2.0]], [[1.0, 0.5, 0.0]]), beta=1.0)
    padded = lists([[1.0, 3.0, -2.0, 9.0], [0.5, -0.5, 7.0, 7.0]], [[1.0, 0.5, 0.0, 4.0], [1.0, 0.0, 5.0, 5.0]],
                   mask=[[True, True, True, False], [True, True, False, False]])
    second = val(name, lists([[0.5, -0.5]], [[1.0, 0.0]]), beta=1.0)
    assert val(name, padded, beta=1.0) == pytest.approx((full + second) / 2, abs=1e-9)


def test_tied_labels_form_no_pair() -> None:
    # items 1 and 2 tie: only pairs (1,3) and (2,3) count
    value = val("pair_hinge", lists([[0.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]]), beta=1.0)
    assert value == pytest.approx(2.0)


def test_lipo_lambda_has_no_gradient_through_delta() -> None:
    lp = lists([[1.0, 3.0, -2.0]], [[1.0, 0.5, 0.0]], grad=True)
    loss("lipo_lambda", lp, beta=1.0).backward()
    # expected: Δ as constants (spec §3.1) times d/ds of softplus(−(s_i − s_j))
    s = [1.0, 3.0, -2.0]
    delta = {(0, 1): 0.311905, (0, 2): 0.188892, (1, 2): 0.298792}
    grad = [0.0, 0.0, 0.0]
    for (i, j), d in delta.items():
        sig = 1 / (1 + math.exp(s[i] - s[j]))  # σ(−(s_i − s_j))
        grad[i] -= d * sig
        grad[j] += d * sig
    assert lp.policy.grad[0].tolist() == pytest.approx(grad, abs=1e-5)


def test_lipo_lambda_score_ties_break_by_index() -> None:
    # equal s: ranks 1, 2, 3 in index order, whatever the labels
    value = val("lipo_lambda", lists([[0.0, 0.0, 0.0]], [[0.0, 1.0, 2.0]]), beta=1.0)
    inv_d = [1 / math.log(2), 1 / math.log(3), 1 / math.log(4)]
    g = [0.0, 1.0, 3.0]
    expected = sum(abs(g[i] - g[j]) * abs(inv_d[i] - inv_d[j]) * LOG2 for i, j in [(1, 0), (2, 0), (2, 1)])
    assert value == pytest.approx(expected, abs=1e-9)


def test_lipo_lambda_mean_reduction_divides_by_pairs() -> None:
    lp = lists([[1.0, 3.0, -2.0]], [[1.0, 0.5, 0.0]])
    assert val("lipo_lambda", lp, beta=1.0, reduction="mean") == pytest.approx(0.6745846 / 3, abs=1e-6)


def test_listmle_ties_break_by_index() -> None:
    # s = [1, 2, 0], ψ = [1, 1, 0]: items 0 and 1 tie, index order puts item 0 first, so τ = (0, 1, 2) and
    # L = [log(e¹ + e² + e⁰) − 1] + [log(e² + e⁰) − 2] + 0 = 1.5345340 (the other order, τ = (1, 0, 2), gives 0.7208677)
    expected = (math.log(math.e + math.e ** 2 + 1) - 1) + (math.log(math.e ** 2 + 1) - 2)
    assert expected == pytest.approx(1.5345340, abs=1e-7)
    assert val("listmle", lists([[1.0, 2.0, 0.0]], [[1.0, 1.0, 0.0]]), beta=1.0) == pytest.approx(expected, abs=1e-9)
    # swapping the tied items' positions swaps their s: the loss becomes the other order's value
    assert val("listmle", lists([[2.0, 1.0, 0.0]], [[1.0, 1.0, 0.0]]), beta=1.0) == pytest.approx(0.7208677, abs=1e-7)


def test_listnet_sum_norm_rejects_negative_labels() -> None:
    with pytest.raises(ConfigError, match="softmax"):
        loss("listnet", lists([[1.0, 0.0]], [[1.0, -1.0]]), beta=1.0)
    assert val("listnet", lists([[1.0, 0.0]], [[1.0, -1.0]]), beta=1.0, label_norm="softmax") > 0


def pro_lists(p: list[float], r: list[float], grad: bool = False) -> LogProbs:
    pol = t([p], grad=grad)
    return LogProbs(policy=pol, lengths=torch.ones_like(pol), scores=t([r]))


def test_pro_single_item_is_sft_only() -> None:
    value, m = get_objective("pro")(pro_lists([-4.0], [1.0]))
    assert m["rank_loss"] == 0.0
    assert float(value.detach()) == pytest.approx(0.05 * 4.0)


def test_pro_all_tied_rewards_give_no_ranking_gradient() -> None:
    lp = pro_lists([-1.0, -2.0, -3.0], [1.0, 1.0, 1.0], grad=True)
    value = loss("pro", lp, sft_weight=0.0)
    assert float(value.detach()) == pytest.approx(math.log(3) + math.log(2), abs=1e-6)
    value.backward()
    assert float(lp.policy.grad.abs().max()) == pytest.approx(0.0, abs=1e-12)


def test_pro_without_temperature_and_unsorted_input() -> None:
    sorted_lp = pro_lists([-1.0, -1.5, -2.0], [2.0, 1.0, 0.5])
    shuffled = pro_lists([-2.0, -1.0, -1.5], [0.5, 2.0, 1.0])
    assert val("pro", shuffled) == pytest.approx(val("pro", sorted_lp), abs=1e-9)
    no_t = val("pro", sorted_lp, sft_weight=0.0, use_temperature=False)
    p = [-1.0, -1.5, -2.0]
    expected = (math.log(sum(math.exp(x) for x in p)) - p[0]) + (math.log(math.exp(p[1]) + math.exp(p[2])) - p[1])
    assert no_t == pytest.approx(expected, abs=1e-6)


def aft_lp(s: list[float], labels: list[bool], grad: bool = True) -> LogProbs:
    pol = t([s], grad=grad)
    return LogProbs(policy=pol, lengths=torch.ones_like(pol), labels=torch.tensor([labels]))


def test_aft_dc_negatives_get_no_gradient() -> None:
    lp = aft_lp([-0.5, -0.7, -0.6, -1.2], [True, True, False, False])
    loss("aft", lp, variant="dc", nll_weight=0.0).backward()
    g = lp.policy.grad[0]
    assert float(g[2]) == 0.0 and float(g[3]) == 0.0
    assert float(g[0]) < 0 and float(g[1]) < 0  # positives are pushed up


def test_aft_empty_group_gives_zero_alignment_loss() -> None:
    value, m = get_objective("aft")(aft_lp([-0.5, -0.7], [True, True]), boundary=0.5, nll_weight=0.0)
    assert float(value.detach()) == 0.0 and m["lists/skipped"] == 1.0
    # the NLL term still trains on the correct COTs
    assert val("aft", aft_lp([-0.5, -0.7], [True, True]), boundary=0.5) == pytest.approx(0.6)
    # no positives: no NLL on wrong COTs
    assert val("aft", aft_lp([-0.5, -0.7], [False, False]), boundary=0.5) == 0.0


def test_aft_bc_requires_boundary() -> None:
    with pytest.raises(ConfigError, match="boundary"):
        loss("aft", aft_lp([-0.5, -0.6], [True, False]))


def test_aft_one_pos_one_neg_is_softplus() -> None:
    value = val("aft", aft_lp([-0.5, -0.6], [True, False]), variant="a", nll_weight=0.0)
    assert value == pytest.approx(math.log1p(math.exp(-0.1)), abs=1e-9)


# ---- token level ------------------------------------------------------------------------------------------

def test_cut_without_flags_is_average_of_two_mles() -> None:
    lp_j = torch.log(t([[[0.4, 0.2]]]))
    lp_p = torch.log(t([[[0.4, 0.2]]]))
    lp = LogProbs(policy=lp_p.sum(-1), lengths=t([[2.0]]), token_policy=lp_j, labels=torch.tensor([[False]]),
                  token_mask=torch.ones(1, 1, 2, dtype=torch.bool), extras={"token_policy_plain": lp_p})
    assert val("cut", lp) == pytest.approx(-(math.log(0.4) + math.log(0.2)) / 2, abs=1e-9)


def test_cut_certain_token_stays_finite() -> None:
    lp_j = t([[[0.0, -5.0]]])
    lp_p = t([[[-1e-9, -5.0]]])
    lp = LogProbs(policy=lp_p.sum(-1), lengths=t([[2.0]]), token_policy=lp_j, labels=torch.tensor([[False]]),
                  token_mask=torch.ones(1, 1, 2, dtype=torch.bool), extras={"token_policy_plain": lp_p})
    assert math.isfinite(val("cut", lp, threshold=1.0 - 1e-12))


def test_cut_detection_is_stop_gradient_and_masks_padding() -> None:
    lp_j = t([[[math.log(0.5), math.log(0.2), 0.0]]], grad=True)
    lp_p = t([[[math.log(0.4), math.log(0.2), 0.0]]], grad=True)
    lp = LogProbs(policy=lp_p.sum(-1), lengths=t([[2.0]]), token_policy=lp_j, labels=torch.tensor([[False]]),
                  token_mask=torch.tensor([[[True, True, False]]]), extras={"token_policy_plain": lp_p})
    loss("cut", lp).backward()
    assert float(lp_j.grad[0, 0, 2]) == 0.0 and float(lp_p.grad[0, 0, 2]) == 0.0


# ---- registry / listing -----------------------------------------------------------------------------------

EXPECTED = {"sft", "poft", "dpo", "robust", "ipo", "hinge", "slic", "simpo", "orpo", "nca", "bco_pair", "apo_zero",
            "sppo_hard", "discopop", "kto", "bco", "apo_zero_unpaired", "lipo_lambda", "listmle", "listnet",
            "pair_logistic", "pair_hinge", "pro", "aft", "cut", "dckd", "adpa"}


def doc_problems(spec: ObjectiveSpec) -> list[str]:
    """What an objective's documentation lacks (DESIGN protocol 2: paper, formula, defaults)."""
    doc = spec.fn.__doc__ or ""
    problems = []
    if not spec.paper:
        problems.append("no paper")
    if not re.search(r"spec §\d|TRL", doc):
        problems.append("no source (a spec § or the TRL loss it matches)")
    if not re.search(r"\bL(_\w+)?\s*=", doc):
        problems.append("no formula (L = …)")
    if "default" not in doc.lower():
        problems.append("no defaults")
    return problems


def test_every_objective_is_registered_and_documented() -> None:
    assert EXPECTED <= set(OBJECTIVES)
    # Names starting with "_" are registered by other tests as throwaway helpers.
    for spec in (s for s in OBJECTIVES.values() if not s.name.startswith("_")):
        assert doc_problems(spec) == [], spec.name


@pytest.mark.parametrize("doc,missing", [
    ("TRL `sigmoid`. Default β = 0.1.", "no formula (L = …)"),
    ("L = −log σ(βh). Default β = 0.1.", "no source (a spec § or the TRL loss it matches)"),
    ("DPO (spec §1.1): L = −log σ(βh).", "no defaults"),
    (None, "no formula (L = …)"),
])
def test_documentation_check_catches_a_missing_part(doc: str | None, missing: str) -> None:
    def fn(lp: LogProbs) -> None: ...
    fn.__doc__ = doc
    assert missing in doc_problems(ObjectiveSpec("x", fn, "pairwise", True, paper="A 2024"))


def test_describe_objectives_rows() -> None:
    rows = {r["name"]: r for r in describe_objectives()}
    assert rows["dpo"]["needs_reference"] and rows["dpo"]["data_kind"] == "pairwise"
    assert rows["dckd"]["needs_teacher"] and rows["cut"]["token_level"]
    assert rows["kto"]["needs_extras"] == ["kl"] and rows["bco"]["stateful"]
    assert "state" not in rows["bco"]["defaults"]
    assert {r["name"] for r in describe_objectives("listwise")} == {
        "lipo_lambda", "listmle", "listnet", "pair_logistic", "pair_hinge", "pro", "aft", "steerlm2", "w2s_confidence"}


def test_unknown_objective_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="available"):
        get_objective("nope")


def test_cli_objectives_lists_every_objective(capsys: pytest.CaptureFixture[str]) -> None:
    from alignkit.cli import main

    assert main(["objectives", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert EXPECTED <= {r["name"] for r in rows}
    assert main(["objectives", "--kind", "unpaired"]) == 0
    out = capsys.readouterr().out
    assert "kto" in out and "dpo" not in out
    assert main(["objectives", "--name", "nope"]) == 2
