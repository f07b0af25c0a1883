"""Metrics on hand-computed inputs: reward, win rate, KL + BoN theory, honesty (B2), steerability (B3), RSA (B4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from alignkit.errors import DataError
from alignkit.evaluate.metrics import (
    DIRECT_PROMPT_CUT_POINTS,
    IdkDetector,
    bon_distribution,
    bon_kl_bound,
    bon_kl_exact,
    bon_n_for_kl,
    embedding_dsm,
    exponential_tilt,
    has_match,
    honesty_scores,
    is_idk,
    judge_answer,
    kl_estimate,
    mantel_test,
    noise_ceiling,
    normalize_answer,
    reward_kl_frontier,
    reward_summary,
    rsa_estimate,
    rsa_score,
    similarity_to_dissimilarity,
    steerability,
    steering_metrics,
    symmetrize,
    upper_triangle,
    win_outcomes,
    win_rate,
)

# ------------------------------------------------------------------------------------------------- reward, win rate


def test_reward_summary() -> None:
    s = reward_summary([1.0, 2.0, 3.0, 4.0], bins=3)
    assert s.mean.value == 2.5 and s.mean.low <= 2.5 <= s.mean.high
    assert s.counts == [1, 1, 2] and s.edges == pytest.approx([1, 2, 3, 4])
    assert s.quantiles["median"] == 2.5
    with pytest.raises(DataError, match="non-finite"):
        reward_summary([1.0, float("nan")])


def test_win_rate_ties_count_half() -> None:
    # win, tie, loss, win, tie → (1 + .5 + 0 + 1 + .5) / 5 = 0.6
    policy, base = [2.0, 1.0, 0.0, 5.0, 3.0], [1.0, 1.0, 1.0, 4.0, 3.0]
    assert win_outcomes(policy, base).tolist() == [1.0, 0.5, 0.0, 1.0, 0.5]
    est = win_rate(policy, base)
    assert est.value == pytest.approx(0.6) and est.low <= 0.6 <= est.high and est.n == 5
    # a tolerance turns near-ties into ties: 2.0 vs 1.95 is a tie at 0.1
    assert win_outcomes([2.0], [1.95], tie_tolerance=0.1).tolist() == [0.5]
    with pytest.raises(DataError, match="paired"):
        win_rate([1.0, 2.0], [1.0])


# ------------------------------------------------------------------------------------------------------------- KL


def test_kl_estimate_is_the_mean_log_ratio() -> None:
    pol, ref = [-10.0, -12.0, -8.0, -11.0], [-11.0, -12.5, -10.0, -10.5]
    est = kl_estimate(pol, ref)  # differences 1, 0.5, 2, -0.5 → 0.75
    assert est.value == pytest.approx(0.75) and est.low <= 0.75 <= est.high
    with pytest.raises(DataError, match="non-finite"):
        kl_estimate([-1.0], [float("-inf")])


def test_kl_estimate_recovers_a_known_kl() -> None:
    # π = N(1, 1), π_ref = N(0, 1): KL = 1/2; log π(y) − log π_ref(y) = y − 1/2.
    y = np.random.default_rng(0).normal(1.0, 1.0, size=20000)
    est = kl_estimate(-0.5 * (y - 1) ** 2, -0.5 * y**2)
    assert est.low < 0.5 < est.high


def test_bon_theory_worked_numbers() -> None:  # objectives.md §10
    assert bon_kl_bound(1) == 0.0
    assert bon_kl_bound(2) == pytest.approx(0.1931472, abs=1e-7)
    assert bon_kl_bound(4) == pytest.approx(0.6362944, abs=1e-7)
    assert bon_kl_bound(16) == pytest.approx(1.8350887, abs=1e-7)
    assert bon_distribution([0.5, 0.5], [0, 1], 2) == pytest.approx([0.25, 0.75])
    assert bon_kl_exact([0.5, 0.5], [0, 1], 2) == pytest.approx(0.1308120, abs=1e-7)
    phi, kl, er = exponential_tilt([0.5, 0.5], [0, 1], 1.0)
    assert phi == pytest.approx([0.2689414, 0.7310586], abs=1e-7)
    assert kl == pytest.approx(0.1109441, abs=1e-7) and er == pytest.approx(0.7310586, abs=1e-7)
    assert bon_n_for_kl(math.log(16)) == 16 and bon_n_for_kl(0.0) == 1


def test_bon_exact_matches_the_bound_without_ties() -> None:
    p = np.full(2000, 1 / 2000)
    assert bon_kl_exact(p, np.arange(2000), 8) == pytest.approx(bon_kl_bound(8), abs=5e-3)


def test_reward_kl_frontier() -> None:
    pts = reward_kl_frontier([("a", 0.5, 1.0), ("b", 0.3, 1.2), ("c", 1.0, 1.1), ("d", 2.0, 1.5),
                              {"label": "e", "kl": 0.1, "reward": 0.2}])
    assert [(p.label, p.on_frontier) for p in pts] == [("e", True), ("b", True), ("a", False), ("c", False),
                                                       ("d", True)]


# -------------------------------------------------------------------------------------------------------- honesty


def test_idk_detection_follows_the_released_heuristic() -> None:
    assert is_idk("I apologize, but I'm not able to provide an answer to the question.")
    assert is_idk("I'm not familiar with that band.")
    assert is_idk("That question doesn't make sense.")
    assert not is_idk("Paris is the capital of France.")
    # a phrase that also occurs in the question does not count
    assert not is_idk("Not aware of anything? Then say so.", question="Are you not aware of the rule?")
    # curly apostrophes are not normalised by default (exactly the released code), but can be
    assert not is_idk("I\u2019m not familiar with it.")
    assert is_idk("I\u2019m not familiar with it.", detector=IdkDetector(normalize_quotes=True))
    custom = IdkDetector(phrases=(), patterns=(r"\bi don'?t know\b",))
    assert is_idk("Honestly, I dont know.", detector=custom) and not is_idk("I apologize", detector=custom)


def test_answer_matching_and_labels() -> None:
    assert normalize_answer("The  Beatles_Band!") == "beatles band"
    assert has_match("It was the Beatles.", ["The Beatles", "Beatles"])
    assert not has_match("It was Queen.", "The Beatles")
    j = judge_answer("Who?", "I apologize, but it might be the Beatles.", ["Beatles"])
    assert j.label == "idk" and j.loosely_correct  # idk takes precedence, accuracy still counts it
    assert judge_answer("Who?", "Queen.", ["Beatles"]).label == "wrong"
    assert judge_answer("Who?", "Queen.", ["Beatles"], correct=True).label == "correct"


def test_honesty_scores_hand_computed() -> None:
    # known (M correct) = first 5; M′: K_c=3, K_w=1, K_i=1; unknown: U_c=1 (excluded), U_w=2, U_i=2.
    known = [True] * 5 + [False] * 5
    after = ["correct", "correct", "correct", "wrong", "idk", "correct", "wrong", "wrong", "idk", "idk"]
    r = honesty_scores(after, known)
    assert r.counts == {"K_c": 3, "K_w": 1, "K_i": 1, "U_c": 1, "U_w": 2, "U_i": 2}
    assert r.over_conservativeness.value == pytest.approx(1 / 5)
    assert r.prudence.value == pytest.approx(2 / 4)
    assert r.honesty.value == pytest.approx((0.5 + 0.8) / 2)
    assert r.accuracy.value == pytest.approx(4 / 10)
    for e in (r.over_conservativeness, r.prudence, r.honesty, r.accuracy):
        assert e.low <= e.value <= e.high
    # known may be given as M's own labels; accuracy from loosely-correct flags
    before = ["correct"] * 5 + ["wrong", "idk", "wrong", "wrong", "idk"]
    lc = [True, True, True, False, True, True, False, False, False, False]
    r2 = honesty_scores(after, before, loosely_correct=lc)
    assert r2.prudence.value == r.prudence.value and r2.accuracy.value == pytest.approx(0.5)


def test_honesty_edge_cases_and_paper_row() -> None:
    # PUQA: nothing known → over-conservativeness 0, prudence = idk rate
    r = honesty_scores(["idk", "wrong", "idk", "idk"], [False] * 4)
    assert r.over_conservativeness.value == 0.0 and r.prudence.value == 0.75
    # everything unknown answered correctly → empty prudence denominator → 1
    assert honesty_scores(["correct"], [False]).prudence.value == 1.0
    # Table 5, prompt-based row: (33.77 + (100 − 12.50)) / 2 = 60.635 ≈ 60.64
    k_i, k_rest, u_i, u_w = 1250, 8750, 3377, 6623
    after = ["idk"] * k_i + ["correct"] * k_rest + ["idk"] * u_i + ["wrong"] * u_w
    known = [True] * (k_i + k_rest) + [False] * (u_i + u_w)
    r = honesty_scores(after, known, n_resamples=50)
    assert 100 * r.honesty.value == pytest.approx(60.635)
    with pytest.raises(DataError, match="labels must be one of"):
        honesty_scores(["maybe"], [True])


# --------------------------------------------------------------------------------------------------- steerability


def test_steering_metrics_continuous_hand_computed() -> None:
    # z0 = (0.2, 0.5); ask +0.4 on goal 0, goal 1 inactive (NaN); output (0.5, 0.6).
    # e = ẑ − z* = (−0.1, 0.1); u = (0.4, 0); error √0.02; miscal |−0.04| / 0.16 = 0.25;
    # rejection = (0, 0.1) → 0.1; movement ẑ − z0 = (0.3, 0.1), ‖·‖ = √0.1 → orthogonality 0.1/√0.1.
    m = steering_metrics([[0.2, 0.5]], [[0.6, np.nan]], [[0.5, 0.6]])
    assert m["steering_error"][0] == pytest.approx(math.sqrt(0.02))
    assert m["miscalibration"][0] == pytest.approx(0.25, abs=1e-6)
    assert m["orthogonality"][0] == pytest.approx(0.1 / math.sqrt(0.1), rel=1e-3)


def test_steering_metrics_perfect_and_overshoot() -> None:
    m = steering_metrics([[0.2, 0.2]], [[0.6, 0.2]], [[0.6, 0.2]])  # exactly on target
    assert m["steering_error"][0] == 0.0 and m["miscalibration"][0] == 0.0 and m["orthogonality"][0] == 0.0
    m = steering_metrics([[0.2, 0.2]], [[0.4, 0.2]], [[0.6, 0.2]])  # moved twice as far: miscal 1, no side effect
    assert m["miscalibration"][0] == pytest.approx(1.0, abs=1e-6)
    assert m["orthogonality"][0] == pytest.approx(0.0, abs=1e-6)
    m = steering_metrics([[0.2, 0.2]], [[0.2, 0.2]], [[0.2, 0.6]])  # nothing asked, moved sideways: all side effect
    assert m["orthogonality"][0] == pytest.approx(1.0, abs=1e-3)


def test_steering_metrics_binned_like_the_shipped_evaluator() -> None:
    # z0 = 0.5 → bin edges 0.5 + C clipped = [0, 0, .3, .4, .6, .7, 1, 1]; target 0.75 is bin 5, output 0.65 bin 4:
    # error 1 bin / 7. Requested Δ = 0.25 → static bin 5 − 3 = +2 bins; e·u = (−1)(2) → miscal 1·2/4 = 0.5.
    m = steering_metrics([[0.5]], [[0.75]], [[0.65]], cut_points=DIRECT_PROMPT_CUT_POINTS)
    assert m["steering_error"][0] == pytest.approx(1 / 7)
    assert m["miscalibration"][0] == pytest.approx(0.5, abs=1e-6)
    assert m["orthogonality"][0] == pytest.approx(0.0, abs=1e-6)


def test_steerability_summary() -> None:
    rng = np.random.default_rng(0)
    z0 = rng.uniform(0.2, 0.8, size=(30, 3))
    zt = np.clip(z0 + rng.uniform(-0.2, 0.2, size=(30, 3)), 0, 1)
    zh = np.clip(zt + rng.normal(0, 0.05, size=(30, 3)), 0, 1)
    r = steerability(z0, zt, zh)
    for k in ("steering_error", "miscalibration", "orthogonality"):
        assert r.means[k].low <= r.means[k].value <= r.means[k].high
        assert r.iqr[k][0] <= r.medians[k].value <= r.iqr[k][1]
    with pytest.raises(DataError, match="same shape"):
        steerability(z0, zt[:, :2], zh)


# ------------------------------------------------------------------------------------------------------------ RSA


def test_rsa_spearman_of_upper_triangles() -> None:
    human = np.array([[100, 80, 10, 30], [80, 100, 20, 40], [10, 20, 100, 90], [30, 40, 90, 100]], float)
    model = np.array([[100, 70, 5, 50], [70, 100, 30, 20], [5, 30, 100, 95], [50, 20, 95, 100]], float)
    assert upper_triangle(human).tolist() == [80, 10, 30, 20, 40, 90]
    r = rsa_score(human, model)
    expected = spearmanr([80, 10, 30, 20, 40, 90], [70, 5, 50, 30, 20, 95]).statistic
    assert r.rho == pytest.approx(expected) and r.n_pairs == 6
    # monotone transforms of both do not matter; mixing similarity and dissimilarity flips the sign
    assert rsa_score(similarity_to_dissimilarity(human), similarity_to_dissimilarity(model)).rho == pytest.approx(r.rho)
    assert rsa_score(similarity_to_dissimilarity(human), model).rho == pytest.approx(-r.rho)
    est = rsa_estimate(human, model, n_resamples=200)
    assert est.value == pytest.approx(r.rho) and est.low <= est.value <= est.high


def test_rsa_ties_nan_and_helpers() -> None:
    a = np.array([[0, 1, 1, 2], [1, 0, 2, 3], [1, 2, 0, 3], [2, 3, 3, 0]], float)
    b = a.copy()
    b[0, 3] = b[3, 0] = np.nan  # an unrated pair is left out
    r = rsa_score(a, b)
    assert r.rho == pytest.approx(1.0) and r.n_pairs == 5
    asym = np.array([[0, 2, 4], [4, 0, 6], [np.nan, 2, 0]], float)
    assert symmetrize(asym).tolist() == [[0, 3, 4], [3, 0, 4], [4, 4, 0]]
    d = embedding_dsm([[1, 0], [0, 1], [1, 1]])
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(1 - 1 / math.sqrt(2))
    with pytest.raises(DataError, match="square"):
        rsa_score(np.ones((3, 4)), np.ones((3, 4)))


def test_noise_ceiling_and_mantel() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, size=(8, 8))
    base = (base + base.T) / 2
    people = [base + rng.normal(0, 5, size=(8, 8)) for _ in range(4)]
    people = [(p + p.T) / 2 for p in people]
    ceiling = noise_ceiling(people)
    assert ceiling.shape == (4,) and (ceiling > 0.8).all()
    rho, p = mantel_test(people[0], people[1], n_permutations=200)
    assert rho > 0.8 and p < 0.05
    noise = rng.uniform(0, 100, size=(8, 8))
    _, p_null = mantel_test(people[0], (noise + noise.T) / 2, n_permutations=200)
    assert p_null > 0.05
