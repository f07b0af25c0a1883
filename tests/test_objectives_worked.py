"""Every worked number of spec/objectives.md §12 that is an objective, to 1e-6 (inputs in fp64 so the check is
about the formula, not fp32 rounding; `test_fp32_matches_fp64` covers the fp32 path)."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.objectives import LogProbs, get_objective
from alignkit.objectives.udm import density_ratio_from_prob

D = torch.float64
TOL = 1e-6


def t(x: object) -> torch.Tensor:
    return torch.tensor(x, dtype=D)


def p1() -> LogProbs:
    """Spec §1 test vector P1: S_θ = (−10, −12), S_ref = (−11, −11.5), |y| = (5, 4); h = 1.5."""
    return LogProbs(policy=t([[-10.0, -12.0]]), lengths=t([[5.0, 4.0]]), reference=t([[-11.0, -11.5]]))


def loss(name: str, lp: LogProbs, **kw: object) -> float:
    return float(get_objective(name)(lp, **kw)[0])


@pytest.mark.parametrize("name,kw,expected", [
    ("dpo", {"beta": 0.1}, 0.6209570),
    ("dpo", {"beta": 0.1, "label_smoothing": 0.1}, 0.6359570),
    ("robust", {"beta": 0.1, "label_smoothing": 0.1}, 0.6022070),
    ("ipo", {"beta": 0.1, "normalize": False}, 12.25),
    ("ipo", {"beta": 0.1}, 21.855625),
    ("slic", {"delta": 1.0, "reg_weight": 0.1}, 1.0),
    ("slic", {"delta": 1.0, "reg_weight": 0.0}, 0.0),
    ("hinge", {"beta": 0.05}, 0.925),
    ("simpo", {"beta": 2.0, "gamma": 0.5}, 0.2014133),
    ("simpo", {"beta": 2.0, "gamma_beta_ratio": 0.25}, 0.2014133),
    ("orpo", {"beta": 0.1}, 2.0288751),
])
def test_pairwise_worked_numbers(name: str, kw: dict, expected: float) -> None:
    assert loss(name, p1(), **kw) == pytest.approx(expected, abs=TOL)


def test_orpo_or_term_and_nll() -> None:
    _, m = get_objective("orpo")(p1())
    assert m["or_loss"] == pytest.approx(0.2887508, abs=TOL)
    assert m["log_odds_ratio"] == pytest.approx(1.0943443, abs=TOL)
    assert m["nll_loss"] == pytest.approx(2.0, abs=TOL)


def test_pairwise_defaults_reproduce_spec() -> None:
    assert loss("dpo", p1()) == pytest.approx(0.6209570, abs=TOL)
    assert loss("robust", p1()) == pytest.approx(0.6022070, abs=TOL)
    assert loss("ipo", p1()) == pytest.approx(21.855625, abs=TOL)
    assert loss("simpo", p1()) == pytest.approx(0.2014133, abs=TOL)
    assert loss("slic", p1()) == pytest.approx(1.0, abs=TOL)


def test_mm_dpo_dynamic_beta() -> None:
    lp = LogProbs(policy=t([[0.0, -1.0]]), lengths=t([[1.0, 1.0]]), reference=t([[0.0, 0.0]]), margins=t([2.0]))
    value, m = get_objective("dpo")(lp, beta=0.1, reward_scaling_w=0.5, reward_scaling_k=0.5)
    assert float(value) == pytest.approx(0.6295076, abs=TOL)
    assert m["beta/mean"] == pytest.approx(0.1316060, abs=TOL)


def test_kto_worked() -> None:
    lp = LogProbs(policy=t([[0.5], [-0.3]]), lengths=t([[3.0], [3.0]]), reference=t([[0.0], [0.0]]),
                  labels=torch.tensor([[True], [False]]),
                  extras={"kl_policy": t([0.2, -0.1]), "kl_reference": t([0.0, 0.0])})
    value, m = get_objective("kto")(lp)
    assert float(value) == pytest.approx(0.4900014, abs=TOL)
    assert m["kl"] == pytest.approx(0.05, abs=TOL)


def bco_batch() -> LogProbs:
    return LogProbs(policy=t([[0.5], [-0.3], [0.1]]), lengths=t([[2.0]] * 3), reference=t([[0.0]] * 3),
                    labels=torch.tensor([[True], [False], [False]]))


def test_bco_worked_three_items() -> None:
    value, m = get_objective("bco")(bco_batch(), state={})
    assert float(value) == pytest.approx(0.6799472, abs=TOL)
    assert m["delta"] == pytest.approx(0.01, abs=TOL)


def test_bco_two_items_and_udm_weight() -> None:
    lp = LogProbs(policy=t([[0.5], [-0.3]]), lengths=t([[2.0]] * 2), reference=t([[0.0]] * 2),
                  labels=torch.tensor([[True], [False]]))
    # δ = mean(0.05, −0.03) = 0.01: both terms are −log σ(0.04) (spec: for one pair both terms are equal)
    bc = br = -math.log(1 / (1 + math.exp(-0.04)))
    assert loss("bco", lp) == pytest.approx((bc + br) / 2, abs=TOL)
    w = float(density_ratio_from_prob(0.6))
    assert w == pytest.approx(1.5, abs=1e-6)
    lp.extras["udm_weight"] = t([1.0, w])
    assert loss("bco", lp) == pytest.approx((bc + w * br) / 2, abs=TOL)


def listwise(s: list[float], psi: list[float]) -> LogProbs:
    """LiPO inputs with β folded in: β = 1, S_ref = 0, so s = S_θ."""
    n = len(s)
    return LogProbs(policy=t([s]), lengths=t([[1.0] * n]), reference=t([[0.0] * n]), scores=t([psi]))


LIPO_S, LIPO_PSI = [1.0, 3.0, -2.0], [1.0, 0.5, 0.0]


@pytest.mark.parametrize("name,kw,expected", [
    ("lipo_lambda", {"log_base": "e"}, 0.6745846),
    ("lipo_lambda", {"log_base": 2}, 0.4675864),
    ("pair_logistic", {}, 2.1822307),
    ("pair_hinge", {}, 3.0),
    ("listmle", {}, 2.1395606),
    ("listnet", {}, 1.4661786),
])
def test_lipo_family_worked(name: str, kw: dict, expected: float) -> None:
    assert loss(name, listwise(LIPO_S, LIPO_PSI), beta=1.0, **kw) == pytest.approx(expected, abs=TOL)


def test_pro_worked() -> None:
    # p = A_θ = [−1, −1.5, −2]; the best item has |y| = 10 so S_θ(y¹) = −10
    lp = LogProbs(policy=t([[-10.0, -1.5, -2.0]]), lengths=t([[10.0, 1.0, 1.0]]), scores=t([[2.0, 1.0, 0.5]]))
    value, m = get_objective("pro")(lp)
    assert float(value) == pytest.approx(3.3748556, abs=TOL)
    assert m["sft_loss"] == pytest.approx(2.0, abs=TOL)
    assert m["rank_loss"] == pytest.approx(0.7989162 + 0.5759394, abs=TOL)


def aft_batch() -> LogProbs:
    return LogProbs(policy=t([[-0.5, -0.7, -0.6, -1.2]]), lengths=t([[1.0] * 4]),
                    labels=torch.tensor([[True, True, False, False]]))


@pytest.mark.parametrize("variant,expected", [("a", 1.4141829), ("dc", 1.4141829), ("bc", 2.3498101)])
def test_aft_worked(variant: str, expected: float) -> None:
    assert loss("aft", aft_batch(), variant=variant, boundary=0.5, nll_weight=0.0) == pytest.approx(expected, abs=TOL)


def test_aft_ranking_variant_from_binary_scores_matches_labels() -> None:
    lp = aft_batch()
    lp.scores, lp.labels = t([[1.0, 1.0, 0.0, 0.0]]), None
    assert loss("aft", lp, boundary=0.5, nll_weight=0.0) == pytest.approx(2.3498101, abs=TOL)


def cut_batch(positive: bool = False) -> LogProbs:
    lp_j = torch.log(t([[[0.5, 0.2, 0.9]]]))
    lp_p = torch.log(t([[[0.4, 0.2, 0.6]]]))
    return LogProbs(policy=lp_p.sum(-1), lengths=t([[3.0]]), token_policy=lp_j,
                    token_mask=torch.ones(1, 1, 3, dtype=torch.bool), labels=torch.tensor([[positive]]),
                    extras={"token_policy_plain": lp_p})


def test_cut_worked() -> None:
    assert loss("cut", cut_batch(), threshold=1.1, unlike_weight=1.0) == pytest.approx(0.9074166, abs=TOL)
    assert loss("cut", cut_batch(), combine="sum") == pytest.approx(1.8148333, abs=TOL)
    # positive judgment: plain SFT on the judgment-free context
    assert loss("cut", cut_batch(positive=True)) == pytest.approx(-math.log(0.4 * 0.2 * 0.6) / 3, abs=TOL)


def test_poft_worked() -> None:
    lp = LogProbs(policy=t([[-2.4]]), lengths=t([[2.0]]), extras={"aligned_avg_logp": t([(-1.0 - 1.5 - 1.4) / 3])})
    assert loss("poft", lp) == pytest.approx(0.6443967, abs=TOL)


def distill_batch(teacher: list[float], student: list[float], ref_teacher: list[float] | None = None) -> LogProbs:
    """One completion position per column, 3-token support; both columns carry the same distributions."""
    def col(v: list[float]) -> torch.Tensor:
        return torch.log(t(v)).reshape(1, 1, 1, 3).expand(1, 2, 1, 3).clone()

    extras = {"teacher_topk_ids": torch.arange(3).reshape(1, 1, 1, 3).expand(1, 2, 1, 3).clone(),
              "teacher_topk_logp": col(teacher), "policy_topk_logp": col(student)}
    if ref_teacher is not None:
        extras["ref_teacher_topk_logp"] = col(ref_teacher)
    return LogProbs(policy=t([[-1.0, -2.0]]), lengths=t([[1.0, 1.0]]), token_mask=torch.ones(1, 2, 1, dtype=torch.bool),
                    extras=extras)


def test_dckd_worked() -> None:
    lp = distill_batch([0.7, 0.2, 0.1], [0.5, 0.3, 0.2])
    assert loss("dckd", lp, sft_weight=0.0, rejected_weight=0.0) == pytest.approx(0.0851228, abs=TOL)
    assert loss("dckd", lp) == pytest.approx(1.0 + 2 * 0.0851228, abs=TOL)


def test_adpa_worked() -> None:
    lp = distill_batch([0.6, 0.3, 0.1], [0.5, 0.3, 0.2], ref_teacher=[0.5, 0.3, 0.2])
    assert loss("adpa", lp, sft_weight=0.0) == pytest.approx(0.0474687, abs=TOL)
    assert loss("adpa", lp) == pytest.approx(1.0 + 0.0474687, abs=TOL)


def test_fp32_matches_fp64() -> None:
    lp32 = LogProbs(policy=p1().policy.float(), lengths=p1().lengths.float(), reference=p1().reference.float())
    for name in ("dpo", "ipo", "orpo", "simpo"):
        assert loss(name, lp32) == pytest.approx(loss(name, p1()), rel=1e-6)


def test_half_precision_inputs_computed_in_fp32() -> None:
    lp = LogProbs(policy=p1().policy.bfloat16(), lengths=p1().lengths, reference=p1().reference.bfloat16())
    value, _ = get_objective("dpo")(lp)
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(0.6209570, abs=1e-5)
