"""Bootstrap confidence intervals (scipy.stats.bootstrap, percentile method): deterministic with a seed, shrink with
more data, reported as computed (never widened), and a paired bootstrap for the difference between two runs."""

from __future__ import annotations

import numpy as np
import pytest

from alignkit.errors import DataError
from alignkit.evaluate.stats import (
    Estimate,
    Interval,
    bootstrap,
    mean_ci,
    paired_bootstrap,
    proportion_ci,
    ratio_ci,
)


def test_mean_ci_contains_the_mean_and_is_seeded() -> None:
    x = np.random.default_rng(0).normal(1.0, 2.0, size=400)
    a, b = mean_ci(x, seed=3), mean_ci(x, seed=3)
    assert a == b
    assert a.value == pytest.approx(x.mean())
    assert a.low < a.value < a.high and a.n == 400
    # ≈ 1.96 · σ/√n half-width for a mean
    assert (a.high - a.low) / 2 == pytest.approx(1.96 * x.std() / 20, rel=0.15)
    assert mean_ci(x, seed=4) != a


def test_interval_shrinks_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small, large = mean_ci(rng.normal(size=50)), mean_ci(rng.normal(size=5000))
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_any_statistic_vectorised_or_not() -> None:
    x = np.arange(1.0, 102.0)
    med = bootstrap(x, np.median, seed=0)
    loop = bootstrap(x, lambda a: float(np.median(a)), seed=0, vectorized=False)
    assert med.value == loop.value == 51.0
    assert (med.low, med.high) == pytest.approx((loop.low, loop.high))


def test_joint_resampling_for_ratios() -> None:
    est = ratio_ci([1, 2, 0], [2, 2, 1], seed=0)  # Σ 3 / Σ 5
    assert est.value == pytest.approx(0.6) and est.low <= 0.6 <= est.high and est.n == 3


def test_degenerate_inputs() -> None:
    assert mean_ci([2.5]) == Estimate(2.5, 2.5, 2.5, 1)
    assert proportion_ci([True, True, True]) == Estimate(1.0, 1.0, 1.0, 3)
    with pytest.raises(DataError, match="zero observations"):
        mean_ci([])
    with pytest.raises(DataError, match="equal length"):
        bootstrap((np.ones(3), np.ones(4)))
    with pytest.raises(DataError, match="level"):
        mean_ci([1.0, 2.0], level=1.5)


def test_estimate_round_trip_and_format() -> None:
    e = Estimate(0.5123, 0.401, 0.617, 20)
    assert Estimate.from_dict(e.as_dict()) == e
    assert Estimate.from_dict(0.3) == Estimate(0.3, 0.3, 0.3, 0)
    assert e.format(3) == "0.512 [0.401, 0.617]"
    assert e.format(3, percent=True) == "51.2% [40.1, 61.7]"
    with pytest.raises(DataError):
        Estimate.from_dict({"low": 1})


def test_two_point_percentile_interval_is_the_hand_computed_one() -> None:
    # Resampled means of [0, 1] are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5% quantiles of
    # that distribution are 0 and 1, and the 25% / 75% quantiles (50% level) are both 1/2.
    assert mean_ci([0.0, 1.0], n_resamples=4000) == Estimate(0.5, 0.0, 1.0, 2)
    assert mean_ci([0.0, 1.0], n_resamples=4000, level=0.5) == Estimate(0.5, 0.5, 0.5, 2, 0.5)


def test_interval_is_not_widened_to_contain_the_point_estimate() -> None:
    # "All 20 values distinct" is 1 on the data but 0 on essentially every resample (P = 20!/20^20 ≈ 2e-8), so the
    # percentile interval is [0, 0]: the old code widened it to [0, 1] to contain the value.
    est = bootstrap(np.arange(20.0), lambda a: float(len(np.unique(a)) == len(a)), vectorized=False)
    assert (est.value, est.low, est.high) == (1.0, 0.0, 0.0)


def test_agrees_with_scipy_bca_when_asked() -> None:
    from scipy.stats import bootstrap as scipy_bootstrap

    x = np.random.default_rng(5).exponential(size=60)
    ours = mean_ci(x, method="BCa", seed=7, n_resamples=999)
    ref = scipy_bootstrap((x,), np.mean, method="BCa", n_resamples=999, rng=np.random.default_rng(7))
    assert (ours.low, ours.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    with pytest.raises(DataError, match="method"):
        mean_ci(x, method="basic-ish")


def test_ratio_resamples_with_an_empty_denominator_are_dropped() -> None:
    # Resamples drawing only the second unit (denominator 0) are undefined; every other resample gives 1/1.
    assert ratio_ci([1, 0], [1, 0], seed=0) == Estimate(1.0, 1.0, 1.0, 2)


def test_paired_bootstrap_of_identical_runs_is_zero() -> None:
    a = [0.0, 1.0, 1.0, 0.0, 1.0, 0.5]
    assert paired_bootstrap(a, list(a)) == Interval(0.0, 0.0, 0.0, 6)


def test_paired_bootstrap_of_a_constant_shift_is_exactly_that_shift() -> None:
    b = np.array([0.25, 3.0, -1.5, 7.75, 0.5, 2.0, 10.0])
    d = paired_bootstrap(b + 1.5, b, seed=3)
    assert d.n == 7 and d.value == pytest.approx(1.5)
    assert d.low == pytest.approx(1.5) and d.high == pytest.approx(1.5)
    # An unpaired view of the same numbers would see the large between-prompt spread instead.
    assert (mean_ci(b + 1.5).high - mean_ci(b + 1.5).low) > 3


def test_paired_bootstrap_takes_other_statistics_and_levels() -> None:
    a, b = [1.0, 2.0, 30.0], [0.0, 2.0, 0.0]
    med = paired_bootstrap(a, b, statistic=np.median, confidence=0.9)
    assert med.value == pytest.approx(2.0 - 0.0) and med.level == 0.9
    # One prompt flips from 0 to 1 out of two: difference 0.5; resamples give 0 (both on the unchanged prompt),
    # 0.5 or 1, so the 95% interval is [0, 1].
    assert paired_bootstrap([1.0, 1.0], [0.0, 1.0], n_resamples=4000) == Estimate(0.5, 0.0, 1.0, 2)
    with pytest.raises(DataError, match="equal length"):
        paired_bootstrap([1.0, 2.0], [1.0])
