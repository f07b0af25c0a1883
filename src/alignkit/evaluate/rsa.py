"""Turing RSA: representational similarity between human and model pairwise judgements (spec testtime_eval.md B4;
Ogg et al. 2024, "Turing Representational Similarity Analysis", arXiv 2412.00577).

Matrices are n×n over the same n items (same order): similarity ratings (e.g. 0–100) or dissimilarities (DSMs).
* `rsa_score(a, b)`: Spearman ρ (average ranks for ties) between the vectorised upper triangles, diagonal excluded.
  Both matrices must be the same kind (both similarities or both dissimilarities); rank correlation makes any
  monotone transform such as D = 100 − S irrelevant, but mixing kinds flips the sign. NaN entries (unrated pairs)
  are left out pairwise, and the count used is reported.
* `symmetrize`: average the (A,B) and (B,A) ratings. `group_matrix`: mean over participants.
* `noise_ceiling`: leave-one-out correlation of each participant with the mean of the others.
* `pairwise_rsa`: correlations among participants (human or model "participants": seeds, temperatures, personas).
* `mantel_test`: permutation p-value, permuting item labels of one matrix (DSM entries are not independent).
* `embedding_dsm`: cosine-distance DSM from item embeddings (the embedding-RSA baseline).
* `rsa_estimate`: the score with a bootstrap CI over items (pairs of a resampled item with itself are dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.stats import Estimate


def _square(m: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    a = np.asarray(m, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise DataError(f"{name}: expected a square n×n matrix; got shape {a.shape}")
    if a.shape[0] < 3:
        raise DataError(f"{name}: RSA needs at least 3 items (3 pairs); got {a.shape[0]}")
    return a


def upper_triangle(m: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Entries above the diagonal, row-major: the n(n−1)/2 unordered pairs."""
    a = np.asarray(m, dtype=float)
    return a[np.triu_indices(a.shape[0], k=1)]


def symmetrize(m: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """(M + Mᵀ)/2, ignoring a NaN in one order (then the other order's rating is used)."""
    a = np.asarray(m, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.stack([a, a.T]), axis=0)


def similarity_to_dissimilarity(s: np.ndarray | Sequence[Sequence[float]], scale: float = 100.0) -> np.ndarray:
    """D = scale − S (e.g. a 0–100 similarity rating to a dissimilarity)."""
    return scale - np.asarray(s, dtype=float)


def group_matrix(matrices: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over participants' matrices (NaN-aware: unrated pairs do not pull the mean)."""
    stack = np.stack([np.asarray(m, dtype=float) for m in matrices])
    with np.errstate(invalid="ignore"):
        return np.nanmean(stack, axis=0)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata  # scipy.stats takes seconds to import; only RSA needs it

    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


@dataclass(frozen=True)
class RSAScore:
    rho: float
    n_pairs: int  # pairs with both entries present


def rsa_score(a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]]) -> RSAScore:
    """Spearman ρ between the upper triangles of two same-kind matrices (NaN pairs excluded)."""
    ma, mb = _square(a, "first matrix"), _square(b, "second matrix")
    if ma.shape != mb.shape:
        raise DataError(f"matrices cover different item sets: {ma.shape} vs {mb.shape}")
    x, y = upper_triangle(ma), upper_triangle(mb)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        raise DataError(f"only {int(ok.sum())} pairs are rated in both matrices; need at least 3")
    return RSAScore(_spearman(x[ok], y[ok]), int(ok.sum()))


def rsa_estimate(a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]], *,
                 n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Estimate:
    """ρ with a percentile-bootstrap CI over items: resample items, take all pairs of distinct draws."""
    ma, mb = _square(a, "first matrix"), _square(b, "second matrix")
    value = rsa_score(ma, mb).rho
    n = ma.shape[0]
    rng = np.random.default_rng(seed)
    iu, ju = np.triu_indices(n, k=1)
    vals = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        i, j = idx[iu], idx[ju]
        keep = i != j
        x, y = ma[i[keep], j[keep]], mb[i[keep], j[keep]]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() >= 3:
            vals.append(_spearman(x[ok], y[ok]))
    boot = np.asarray(vals)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return Estimate(value, value, value, n, level)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(value, float(min(low, value)), float(max(high, value)), n, level)


def pairwise_rsa(matrices: Sequence[np.ndarray]) -> np.ndarray:
    """k×k matrix of ρ between every two participants' matrices (diagonal 1)."""
    k = len(matrices)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = rsa_score(matrices[i], matrices[j]).rho
    return out


def noise_ceiling(matrices: Sequence[np.ndarray]) -> np.ndarray:
    """Leave-one-out ρ of each participant with the mean of the others (human–human agreement)."""
    if len(matrices) < 2:
        raise DataError("a noise ceiling needs at least 2 participants")
    return np.array([rsa_score(m, group_matrix([o for j, o in enumerate(matrices) if j != i])).rho
                     for i, m in enumerate(matrices)])


def mantel_test(a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]], *,
                n_permutations: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(ρ, one-sided p-value for ρ > 0) permuting the item labels of `b`; p = (1 + #{ρ_perm ≥ ρ}) / (1 + P)."""
    ma, mb = _square(a, "first matrix"), _square(b, "second matrix")
    rho = rsa_score(ma, mb).rho
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_permutations):
        p = rng.permutation(ma.shape[0])
        if rsa_score(ma, mb[np.ix_(p, p)]).rho >= rho:
            hits += 1
    return rho, (1 + hits) / (1 + n_permutations)


def embedding_dsm(embeddings: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Cosine distances 1 − cos(e_i, e_j) between item embeddings (n × dim)."""
    e = np.asarray(embeddings, dtype=float)
    if e.ndim != 2:
        raise DataError(f"embeddings must be (n_items, dim); got {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError("an item embedding is all zeros; cosine distance is undefined")
    u = e / norms
    return 1.0 - u @ u.T
