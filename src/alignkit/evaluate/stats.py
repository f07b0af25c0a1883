"""Bootstrap confidence intervals: every headline number alignkit reports carries one.

Computed by `scipy.stats.bootstrap`, **percentile method** by default (Efron & Tibshirani 1993, ch. 13): resample
the n observation units with replacement B times, recompute the statistic on each resample, and take the
(α/2, 1−α/2) quantiles of the B values as the interval; `method="BCa"` selects scipy's bias-corrected and
accelerated interval instead. The interval is reported as computed (it is not widened to contain the point
estimate). The resampling is seeded (same data + same seed ⇒ same interval) and vectorised, in batches so memory
stays bounded for large n (testtime_eval.md C2.8: record seeds and sample counts).

Several arrays can be resampled *jointly* (the same indices for each), which is how paired and ratio statistics are
bootstrapped at the level of their observation unit: e.g. IFEval instruction-level accuracy resamples prompts and
computes Σ followed / Σ instructions; a win rate resamples prompts with their (policy, baseline) pair.
`paired_bootstrap(a, b)` is the interval of the difference between two runs on the same prompts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alignkit.errors import DataError

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95
DEFAULT_METHOD = "percentile"
# Elements of one resample chunk (B_chunk × n); bounds memory at ~ 8 bytes × this per array.
_CHUNK_ELEMENTS = 4_000_000

Statistic = Callable[..., Any]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a (bootstrap) confidence interval over `n` observation units."""

    value: float
    low: float
    high: float
    n: int
    level: float = DEFAULT_LEVEL

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | None = None, field: str | None = None) -> Estimate:
        """Read `{"value", "low", "high"[, "n", "level"]}`; a bare number becomes a CI-less estimate (low = high)."""
        if isinstance(d, int | float) and not isinstance(d, bool):
            v = float(d)
            return cls(v, v, v, 0)
        if not isinstance(d, dict) or "value" not in d:
            raise DataError(f"expected a number or an object with 'value', 'low', 'high'; got {d!r}",
                            source=source, field=field)
        try:
            value = float(d["value"])
            low = float(d.get("low", value))
            high = float(d.get("high", value))
            return cls(value, low, high, int(d.get("n", 0)), float(d.get("level", DEFAULT_LEVEL)))
        except (TypeError, ValueError) as e:
            raise DataError(f"non-numeric estimate {d!r}", source=source, field=field) from e

    @property
    def has_ci(self) -> bool:
        return self.high > self.low

    def format(self, digits: int = 3, percent: bool = False) -> str:
        """`0.512 [0.401, 0.617]` (or `51.2% [40.1, 61.7]` with percent=True)."""
        if math.isnan(self.value):
            return "n/a"
        scale, unit = (100.0, "%") if percent else (1.0, "")
        d = max(digits - 2, 1) if percent else digits
        v = f"{self.value * scale:.{d}f}{unit}"
        if not self.has_ci:
            return v
        return f"{v} [{self.low * scale:.{d}f}, {self.high * scale:.{d}f}]"

    def __str__(self) -> str:
        return self.format()


def _as_arrays(data: Any) -> list[np.ndarray]:
    arrays = list(data) if isinstance(data, tuple) else [data]
    out = [np.asarray(a, dtype=float) for a in arrays]
    n = out[0].shape[0] if out[0].ndim else 0
    for i, a in enumerate(out):
        if a.ndim != 1:
            raise DataError(f"bootstrap input {i} must be one-dimensional (one value per unit); got shape {a.shape}")
        if a.shape[0] != n:
            raise DataError(f"bootstrap inputs must have equal length; input 0 has {n}, input {i} has {a.shape[0]}")
    if n == 0:
        raise DataError("cannot estimate from zero observations")
    return out


def bootstrap(data: np.ndarray | Sequence[float] | tuple[Any, ...], statistic: Statistic | None = None, *,
              n_resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
              vectorized: bool = True, method: str = DEFAULT_METHOD) -> Estimate:
    """Bootstrap estimate of `statistic(data)` with `scipy.stats.bootstrap` (percentile method by default).

    data: a 1-D array (one value per observation unit) or a tuple of equal-length 1-D arrays resampled jointly
        (scipy's `paired=True`: the same row indices for every array).
    statistic: called as `statistic(*arrays, axis=-1)` on `(B, n)` resampled arrays when `vectorized` (numpy
        reductions like `np.mean` work as is), else as `statistic(*arrays)` once per resample. Default: the mean.
        Resamples where it is non-finite (e.g. a ratio whose resampled denominator is empty) are dropped and the
        percentile interval is taken over the rest (with `method="BCa"` such resamples make scipy's interval
        undefined, and the percentile interval of the finite resamples is reported instead).
    method: "percentile" (default; Efron & Tibshirani 1993 ch. 13) or "BCa" (bias-corrected and accelerated,
        ch. 14), passed to scipy. The interval is reported as scipy computes it: a percentile interval of a skewed
        statistic may exclude the point estimate, and it is not widened to hide that.
    Returns Estimate(value = statistic on the full data, low/high = the interval, n = number of units).
    With n = 1, or a non-finite value, the interval collapses to the value.
    """
    if not 0.0 < level < 1.0:
        raise DataError(f"confidence level must be in (0, 1); got {level}")
    if n_resamples < 1:
        raise DataError(f"n_resamples must be >= 1; got {n_resamples}")
    if method.lower() not in ("percentile", "bca"):
        raise DataError(f"bootstrap method must be 'percentile' or 'BCa'; got {method!r}")
    arrays = _as_arrays(data)
    stat = statistic if statistic is not None else np.mean
    n = arrays[0].shape[0]
    if vectorized:
        value = float(stat(*[a[None, :] for a in arrays], axis=-1)[0])
    else:
        value = float(stat(*arrays))
    if n == 1 or not math.isfinite(value):
        return Estimate(value, value, value, n, level)
    from scipy.stats import bootstrap as scipy_bootstrap  # scipy.stats is slow to import; only here

    def scipy_stat(*xs: np.ndarray, axis: int = -1) -> np.ndarray | float:
        return stat(*xs, axis=axis) if vectorized else float(stat(*xs))

    with warnings.catch_warnings():
        # A degenerate bootstrap distribution (constant data, NaN resamples) warns; it is handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy_bootstrap(tuple(arrays), scipy_stat, n_resamples=n_resamples, vectorized=vectorized,
                              paired=True, confidence_level=level, method=method, batch=max(1, _CHUNK_ELEMENTS // n),
                              rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        boot = np.asarray(res.bootstrap_distribution, dtype=float)
        boot = boot[np.isfinite(boot)]
        if boot.size == 0:
            return Estimate(value, value, value, n, level)
        if np.ptp(boot) == 0.0:  # every resample gives the same number: the interval is that number
            return Estimate(value, float(boot[0]), float(boot[0]), n, level)
        alpha = 1.0 - level
        low, high = (float(q) for q in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    return Estimate(value, low, high, n, level)


def paired_bootstrap(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], *,
                     statistic: Statistic | None = None, confidence: float = DEFAULT_LEVEL,
                     n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                     method: str = DEFAULT_METHOD) -> Estimate:
    """Paired bootstrap of the difference statistic(a) − statistic(b) between two runs on the same units.

    a[i] and b[i] must be the same observation unit (e.g. the same prompt id scored in two runs): each resample
    draws prompt indices once and uses them for both arrays, so the between-prompt variance that the two runs
    share cancels and the interval is that of the difference, not of two independent means.
    statistic: a vectorised reduction `f(x, axis=-1)` (default: the mean). Identical runs give [0, 0]; a
    constant shift a = b + c gives c with an interval of width 0.
    Returns Estimate(value = statistic(a) − statistic(b), low, high, n = number of pairs, level = confidence).
    """
    stat = statistic if statistic is not None else np.mean

    def diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(stat(x, axis=axis)) - np.asarray(stat(y, axis=axis))

    return bootstrap((np.asarray(a, dtype=float), np.asarray(b, dtype=float)), diff, n_resamples=n_resamples,
                     level=confidence, seed=seed, method=method)


def mean_ci(x: np.ndarray | Sequence[float], **kwargs: Any) -> Estimate:
    """Mean with a percentile-bootstrap CI (kwargs as `bootstrap`)."""
    return bootstrap(np.asarray(x, dtype=float), np.mean, **kwargs)


def proportion_ci(successes: np.ndarray | Sequence[bool | float], **kwargs: Any) -> Estimate:
    """Fraction of successes (booleans or 0/1, or fractional credit such as 0.5 for ties) with a CI."""
    return mean_ci(np.asarray(successes, dtype=float), **kwargs)


def ratio_ci(numerators: np.ndarray | Sequence[float], denominators: np.ndarray | Sequence[float],
             **kwargs: Any) -> Estimate:
    """Σ numerator / Σ denominator with the units (rows) resampled jointly: a cluster bootstrap for pooled rates."""

    def ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
        d = den.sum(axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, num.sum(axis=axis) / np.where(d > 0, d, 1), np.nan)

    return bootstrap((np.asarray(numerators, float), np.asarray(denominators, float)), ratio, **kwargs)


# The name the run-comparison API speaks of: an interval is an Estimate (value, low, high, n, level).
Interval = Estimate
