"""PROFILE factor-level preference analysis (Oh et al., arXiv 2410.06965; spec ../shared/spec/testtime_eval.md
§B7; no code was found, so the formulas are the spec's reconstruction).

For a preference source (human labels, a model as generator, a model as evaluator) and a factor f with
manifestation M_f(response): τ_f = (C_f − D_f) / (C_f + D_f) over pairs where M_f is not tied, C_f counting pairs
whose preferred response has the higher M_f and D_f the lower. Factor-level alignment of two sources is the rank
correlation (Kendall's τ-b and Spearman) of their τ vectors, plus the overlap of their top-k factors.

Data: a pairwise JSONL whose rows hold `chosen_factors` and `rejected_factors`, objects {factor: number}
(length by rule, the others from any extractor), and optionally `source` to split by preference source.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.errors import DataError


def factor_influence(preferred: Sequence[float], other: Sequence[float], *, n_boot: int = 1000, seed: int = 0
                     ) -> dict[str, Any]:
    """τ_f with counts and a bootstrap 95% interval over the untied pairs."""
    diff = np.sign(np.asarray(preferred, dtype=float) - np.asarray(other, dtype=float))
    untied = diff[diff != 0]
    c, d = int((untied > 0).sum()), int((untied < 0).sum())
    out: dict[str, Any] = {"tau": (c - d) / (c + d) if c + d else float("nan"), "concordant": c, "discordant": d,
                           "ties": int((diff == 0).sum())}
    if c + d:
        rng = np.random.default_rng(seed)
        boots = rng.choice(untied, size=(n_boot, len(untied)), replace=True).mean(1)  # mean of ±1 = τ
        out["low"], out["high"] = float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
    return out


def read_factor_pairs(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by `source` (default "all"); a row without both factor objects is an error with FILE:LINE."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, row in iter_jsonl_rows(path):  # blank lines skipped; a bad line is a DataError naming FILE:LINE
        if isinstance(row, DataError):
            raise row
        for key in ("chosen_factors", "rejected_factors"):
            if not isinstance(row.get(key), dict):
                raise DataError("expected an object {factor: number}", source=str(path), line=i, field=key)
            for f, v in row[key].items():
                if not isinstance(v, int | float) or isinstance(v, bool):
                    raise DataError(f"factor {f!r} must be a number, got {v!r}", source=str(path), line=i,
                                    field=key)
        groups[str(row.get("source", "all"))].append(row)
    return dict(groups)


def profile(rows: Sequence[Mapping[str, Any]], factors: Sequence[str] | None = None, **kw: Any
            ) -> dict[str, dict[str, Any]]:
    """τ_f for every factor present in both columns of a row (rows missing a factor skip it for that factor)."""
    names = factors or sorted({f for r in rows for f in r["chosen_factors"] if f in r["rejected_factors"]})
    out = {}
    for f in names:
        pairs = [(r["chosen_factors"][f], r["rejected_factors"][f]) for r in rows
                 if f in r["chosen_factors"] and f in r["rejected_factors"]]
        if pairs:
            a, b = zip(*pairs, strict=True)
            out[f] = {**factor_influence(a, b, **kw), "pairs": len(pairs)}
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    order = x.argsort(kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):  # average ranks for ties
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, float), np.asarray(b, float)
    n = len(x)
    num = tx = ty = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            num += dx * dy
            tx += dx != 0
            ty += dy != 0
    return float(num / np.sqrt(tx * ty)) if tx and ty else float("nan")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def factor_alignment(tau_a: Mapping[str, float], tau_b: Mapping[str, float], top_k: int = 3) -> dict[str, Any]:
    """Kendall τ-b and Spearman between two sources' τ_f over their shared factors; top-k overlap by τ."""
    shared = sorted(f for f in tau_a if f in tau_b and np.isfinite(tau_a[f]) and np.isfinite(tau_b[f]))
    if len(shared) < 2:
        raise DataError(f"factor alignment needs at least two shared factors, got {shared}")
    a = [tau_a[f] for f in shared]
    b = [tau_b[f] for f in shared]
    top = [set(sorted(shared, key=lambda f, t=t: (-t[f], f))[:top_k]) for t in (tau_a, tau_b)]
    return {"factors": shared, "kendall_tau": kendall_tau_b(a, b), "spearman": spearman(a, b),
            f"top{top_k}_overlap": len(top[0] & top[1]) / min(top_k, len(shared))}
