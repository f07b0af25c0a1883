"""Steerability: steering error, miscalibration and side effects (orthogonality) in a goal space (spec
testtime_eval.md B3; Chang et al. 2025, "A Course Correction in Steerability Evaluation", arXiv 2505.23816; code
tchang1997/steerability `steerability_metrics.py`).

Inputs, each of shape (n, d) in the normalised goal space [0,1]^d: source z0 = g(x0), target z* = z0 + Δ (NaN on an
inactive goal means "unchanged", i.e. z0), output ẑ = g(y). With e = ẑ − z* and u = z* − z0 (requested move):
* steering error  = ‖ẑ − z*‖₂
* miscalibration  = |⟨e, u⟩| / ‖u‖²  (over/undershoot along the requested direction, as a fraction of ‖u‖)
* orthogonality   = ‖e − proj_u(e)‖ / ‖ẑ − z0‖, clipped to [0, 1] (share of the movement off the requested axis)
The code's small epsilons are kept (1e-8 in norms, 1e-4·‖u‖ in the orthogonality denominator) so a zero move gives
finite values. `cut_points=None` (default) is the paper's continuous definition; `cut_points=DIRECT_PROMPT_CUT_POINTS`
reproduces the shipped evaluator, which measures everything in bins: positions are binned against z0 + C (clipped to
[0,1]), requested moves by binning Δ against C, and distances are bin counts / (len(C) − 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.stats import Estimate, bootstrap, mean_ci

DIRECT_PROMPT_CUT_POINTS = np.array([-1.0, -0.5, -0.2, -0.1, 0.1, 0.2, 0.5, 1.0])
DEFAULT_GOALS: tuple[str, ...] = ("reading_difficulty", "textual_diversity", "text_length", "formality")


def _matrix(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise DataError(f"{name}: expected shape (n_items, n_goals); got {a.shape}")
    return a


def _vectors(source: Any, target: Any, output: Any, cut_points: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(e_by_goal, u_by_goal, moved_by_goal) in continuous units or bins; e = ẑ − z*."""
    z0, zt, zh = _matrix(source, "source"), _matrix(target, "target"), _matrix(output, "output")
    if not (z0.shape == zt.shape == zh.shape):
        raise DataError(f"source {z0.shape}, target {zt.shape} and output {zh.shape} must have the same shape")
    if np.isnan(z0).any() or np.isnan(zh).any():
        raise DataError("source and output goal vectors must be finite (NaN is allowed only in target)")
    zt = np.where(np.isnan(zt), z0, zt)
    if cut_points is None:
        return zh - zt, zt - z0, zh - z0
    c = np.asarray(cut_points, dtype=float)
    if c.ndim != 1 or len(c) % 2 != 0 or (np.diff(c) <= 0).any():
        raise DataError("cut_points must be an increasing 1-D array of even length (an odd number of bins, the "
                        "middle one meaning 'unchanged')")
    per_side = (len(c) - 2) / 2
    scale = len(c) - 1
    dyn = np.clip(z0[..., None] + c[None, None, :], 0.0, 1.0)
    target_bins = np.sum(zt[..., None] >= dyn, axis=2) - 1
    out_bins = np.sum(zh[..., None] >= dyn, axis=2) - 1
    delta_bins = np.sum((zt - z0)[..., None] >= c, axis=2) - 1 - per_side
    return (out_bins - target_bins) / scale, delta_bins / scale, (out_bins - per_side) / scale


def steering_metrics(source: Any, target: Any, output: Any, *, cut_points: Sequence[float] | np.ndarray | None = None
                     ) -> dict[str, np.ndarray]:
    """Per-item steering error, miscalibration and orthogonality (arrays of length n)."""
    cp = None if cut_points is None else np.asarray(cut_points, dtype=float)
    e, u, moved = _vectors(source, target, output, cp)
    u_sq = np.sum(u * u, axis=1)
    u_norm = np.sqrt(u_sq)
    steering_error = np.linalg.norm(e, axis=1)
    miscal = np.abs(np.sum(e * u, axis=1) / (u_norm + 1e-8)) / (u_norm + 1e-8)
    rejection = np.linalg.norm(e - (np.sum(e * u, axis=1) / (u_sq + 1e-8))[:, None] * u, axis=1)
    denom = np.linalg.norm(moved, axis=1) + 1e-4 * (u_norm + 1e-8)
    ortho = np.clip(rejection / denom, 0.0, 1.0)
    return {"steering_error": steering_error, "miscalibration": miscal, "orthogonality": ortho}


@dataclass
class SteerabilityResult:
    """Mean (with CI), median and IQR of each metric over the probe, plus the per-item arrays."""

    means: dict[str, Estimate]
    medians: dict[str, Estimate]
    iqr: dict[str, tuple[float, float]]
    per_item: dict[str, np.ndarray]

    def as_dict(self) -> dict[str, Any]:
        return {k: {"mean": self.means[k].as_dict(), "median": self.medians[k].as_dict(),
                    "q25": self.iqr[k][0], "q75": self.iqr[k][1]} for k in self.means}


def steerability(source: Any, target: Any, output: Any, *, cut_points: Sequence[float] | np.ndarray | None = None,
                 seed: int = 0, n_resamples: int = 2000) -> SteerabilityResult:
    """Summaries over probe items (the paper reports medians; means and medians both carry bootstrap CIs)."""
    per = steering_metrics(source, target, output, cut_points=cut_points)
    kw = {"seed": seed, "n_resamples": n_resamples}
    return SteerabilityResult(
        means={k: mean_ci(v, **kw) for k, v in per.items()},
        medians={k: bootstrap(v, np.median, **kw) for k, v in per.items()},
        iqr={k: (float(np.quantile(v, 0.25)), float(np.quantile(v, 0.75))) for k, v in per.items()},
        per_item=per)
