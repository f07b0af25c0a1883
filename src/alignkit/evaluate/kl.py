"""KL(policy ‖ reference) from samples, the reward–KL frontier, and best-of-N KL theory (objectives.md §10).

Monte-Carlo KL: for y_i ~ π(·|x_i), KL(π‖π_ref) ≈ (1/n) Σ_i [log π(y_i|x_i) − log π_ref(y_i|x_i)], each term summed
over the completion's tokens. Inputs are per-sample *summed* log-probs, so any model or sampler can produce them
(`Sampler.score_logprobs` gives per-token values; sum them). The estimator is unbiased but single samples can be
negative; the mean can be slightly negative for nearly identical models. The samples must come from the policy.

Best-of-N (Stiennon et al. 2020; Beirami et al. 2024; Yang et al. 2024, "Asymptotics of Language Model Alignment"):
* `bon_kl_bound(N) = log N − (N−1)/N`: exact for continuous rewards (no ties), otherwise an upper bound;
* `bon_kl_exact(p, r, N)`: the exact KL for a finite support with possibly tied rewards;
* `exponential_tilt(p, r, λ)`: φ(y) ∝ p(y)·exp(λ r(y)), the KL-constrained RL optimum (λ = 1/β);
* `bon_n_for_kl(kl) = round(exp(kl))`: the BoN baseline to compare an RL checkpoint at that KL with (§10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.stats import Estimate, mean_ci


def kl_estimate(policy_logps: Sequence[float] | np.ndarray, reference_logps: Sequence[float] | np.ndarray, *,
                seed: int = 0, n_resamples: int = 2000) -> Estimate:
    """Monte-Carlo KL(π‖π_ref) in nats per sequence: mean of log π(y|x) − log π_ref(y|x) over samples y ~ π."""
    p = np.asarray(policy_logps, dtype=float)
    r = np.asarray(reference_logps, dtype=float)
    if p.ndim != 1 or p.shape != r.shape:
        raise DataError(f"policy_logps {p.shape} and reference_logps {r.shape} must be 1-D and paired "
                        "(one summed log-prob per sample)")
    bad = np.flatnonzero(~(np.isfinite(p) & np.isfinite(r)))
    if bad.size:
        raise DataError(f"{bad.size} non-finite log-prob(s), first at sample {int(bad[0])}; a -inf reference "
                        "log-prob means the reference cannot produce the sample (infinite KL)")
    return mean_ci(p - r, seed=seed, n_resamples=n_resamples)


@dataclass(frozen=True)
class FrontierPoint:
    label: str
    kl: float
    reward: float
    on_frontier: bool


def reward_kl_frontier(points: Sequence[tuple[str, float, float]] | Sequence[dict[str, Any]]
                       ) -> list[FrontierPoint]:
    """Mark the Pareto-optimal runs: no other point has KL ≤ and reward ≥ with one strict.

    points: (label, kl, reward) tuples or dicts with those keys. Returns all points sorted by KL, each flagged; the
    flagged ones, in order, are the frontier (reward rises with KL along it).
    """
    rows: list[tuple[str, float, float]] = []
    for i, pt in enumerate(points):
        if isinstance(pt, dict):
            try:
                rows.append((str(pt.get("label", i)), float(pt["kl"]), float(pt["reward"])))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"frontier point {i} needs numeric 'kl' and 'reward': {pt!r}") from e
        else:
            label, kl, rew = pt
            rows.append((str(label), float(kl), float(rew)))
    for label, kl, rew in rows:
        if not (math.isfinite(kl) and math.isfinite(rew)):
            raise DataError(f"frontier point {label!r} has a non-finite kl or reward ({kl}, {rew})")
    rows.sort(key=lambda t: (t[1], -t[2]))
    out = []
    best = -math.inf
    for label, kl, rew in rows:
        on = rew > best
        best = max(best, rew)
        out.append(FrontierPoint(label, kl, rew, on))
    return out


def bon_kl_bound(n: int) -> float:
    """log N − (N−1)/N nats: KL(π_BoN‖p) for continuous rewards; an upper bound otherwise. N=4 → 0.6362944."""
    if n < 1:
        raise DataError(f"best-of-N needs N >= 1; got {n}")
    return math.log(n) - (n - 1) / n


def bon_n_for_kl(kl: float) -> int:
    """The N whose BoN baseline matches an RL checkpoint at this KL: round(exp(KL)) (objectives.md §10)."""
    return max(1, round(math.exp(kl)))


def _distribution(p: Sequence[float] | np.ndarray, r: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pa, ra = np.asarray(p, dtype=float), np.asarray(r, dtype=float)
    if pa.ndim != 1 or pa.shape != ra.shape:
        raise DataError("p and r must be 1-D arrays of equal length (one entry per outcome)")
    if (pa < 0).any() or not math.isclose(pa.sum(), 1.0, rel_tol=1e-6):
        raise DataError(f"p must be a probability vector (non-negative, sums to 1); sums to {pa.sum()}")
    return pa, ra


def _kl(q: np.ndarray, p: np.ndarray) -> float:
    m = q > 0
    return float(np.sum(q[m] * np.log(q[m] / p[m])))


def bon_distribution(p: Sequence[float] | np.ndarray, r: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Exact best-of-N distribution on a finite support. Ties among the best are broken uniformly, so outcomes with
    equal reward share the mass of their reward level in proportion to p: π(y) = p(y)/P(r=r_y)·[F(r_y)^N − F⁻(r_y)^N]
    with F the CDF of r under p (F⁻ the strict one)."""
    pa, ra = _distribution(p, r)
    out = np.zeros_like(pa)
    for level in np.unique(ra):
        at = ra == level
        f_le = pa[ra <= level].sum()
        f_lt = pa[ra < level].sum()
        mass = f_le ** n - f_lt ** n
        out[at] = pa[at] / pa[at].sum() * mass if pa[at].sum() > 0 else 0.0
    return out


def bon_kl_exact(p: Sequence[float] | np.ndarray, r: Sequence[float] | np.ndarray, n: int) -> float:
    """Exact KL(π_BoN‖p) on a finite support. p=[.5,.5], r=[0,1], N=2 → 0.1308120 (< bound 0.1931472)."""
    pa, _ = _distribution(p, r)
    return _kl(bon_distribution(p, r, n), pa)


def exponential_tilt(p: Sequence[float] | np.ndarray, r: Sequence[float] | np.ndarray, lam: float
                     ) -> tuple[np.ndarray, float, float]:
    """φ(y) = p(y)·exp(λ r(y)) / E_p[exp(λ r)]; returns (φ, KL(φ‖p), E_φ[r]).
    p=[.5,.5], r=[0,1], λ=1 → φ=[0.2689414, 0.7310586], KL 0.1109441, E[r] 0.7310586."""
    pa, ra = _distribution(p, r)
    logits = np.where(pa > 0, np.log(np.where(pa > 0, pa, 1.0)) + lam * ra, -np.inf)
    logits -= logits.max()
    phi = np.exp(logits)
    phi /= phi.sum()
    return phi, _kl(phi, pa), float(np.dot(phi, ra))
