"""Bootstrap confidence intervals: contain the value, deterministic with a seed, shrink with more data."""

from __future__ import annotations

import numpy as np
import pytest

from alignkit.errors import DataError
from alignkit.evaluate.stats import Estimate, bootstrap, mean_ci, proportion_ci, ratio_ci


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
