"""Reward summaries and win rates.

* `reward_summary`: mean with a bootstrap CI, spread, quantiles and histogram data (counts + bin edges) for plots.
* `win_rate`: paired comparison against a baseline's scores on the same prompts; a win counts 1, a tie 1/2, a loss 0
  (the RewardBench / AlpacaEval convention for ties). Ties are |a − b| ≤ `tie_tolerance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.stats import Estimate, mean_ci


def _finite_1d(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise DataError(f"{name}: expected one score per completion (1-D); got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{name}: no scores")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise DataError(f"{name}: {bad.size} non-finite score(s), first at index {int(bad[0])}")
    return a


@dataclass
class RewardSummary:
    mean: Estimate
    std: float
    quantiles: dict[str, float]  # q05, q25, median, q75, q95
    counts: list[int]  # histogram counts, len = bins
    edges: list[float]  # histogram bin edges, len = bins + 1

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.as_dict(), "std": self.std, "quantiles": self.quantiles,
                "histogram": {"counts": self.counts, "edges": self.edges}}


def reward_summary(scores: Sequence[float] | np.ndarray, *, bins: int = 20, seed: int = 0,
                   n_resamples: int = 2000) -> RewardSummary:
    """Mean reward (CI over completions), std, quantiles and a `bins`-bin histogram of the scores."""
    a = _finite_1d(scores, "scores")
    counts, edges = np.histogram(a, bins=bins)
    q = np.quantile(a, [0.05, 0.25, 0.5, 0.75, 0.95])
    return RewardSummary(
        mean=mean_ci(a, seed=seed, n_resamples=n_resamples), std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        quantiles=dict(zip(["q05", "q25", "median", "q75", "q95"], map(float, q), strict=True)),
        counts=[int(c) for c in counts], edges=[float(e) for e in edges])


def win_outcomes(scores: Sequence[float] | np.ndarray, baseline_scores: Sequence[float] | np.ndarray,
                 tie_tolerance: float = 0.0) -> np.ndarray:
    """Per-prompt credit: 1 win, 0.5 tie (|a − b| ≤ tie_tolerance), 0 loss."""
    a = _finite_1d(scores, "scores")
    b = _finite_1d(baseline_scores, "baseline_scores")
    if a.shape != b.shape:
        raise DataError(f"win rate needs paired scores: {a.size} policy scores vs {b.size} baseline scores "
                        "(one per prompt, same order)")
    if tie_tolerance < 0:
        raise DataError(f"tie_tolerance must be >= 0; got {tie_tolerance}")
    d = a - b
    return np.where(np.abs(d) <= tie_tolerance, 0.5, (d > 0).astype(float))


def win_rate(scores: Sequence[float] | np.ndarray, baseline_scores: Sequence[float] | np.ndarray, *,
             tie_tolerance: float = 0.0, seed: int = 0, n_resamples: int = 2000) -> Estimate:
    """Win rate of `scores` over `baseline_scores` (paired by index; ties count half) with a CI over prompts."""
    return mean_ci(win_outcomes(scores, baseline_scores, tie_tolerance), seed=seed, n_resamples=n_resamples)
