"""Personality Activation Search (PAS; Zhu, Yang, Zhang, arXiv 2408.11779; code zhu-minjun/PAlign `PAlign/pas.py`):
the per-head mass-mean direction and σ, the `o_proj` bias that adds α·σ_h·v_h to the selected heads, and the
α selection by summed per-trait MAE — selected on held-out *train* items, never on the reported test items (the
code's leak; spec ../shared/spec/wave2_selfalign_merge.md §4 [design]).

Not here yet: head activation capture, the logistic-probe head ranking (needs scikit-learn, not installed), the
`o_proj` pre-hook on a live model and `alignkit steer search` (docs/selfalign.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from alignkit.errors import ConfigError, DataError

ALPHAS = (0.0, 1.0, 2.0, 4.0, 6.0, 8.0)


def head_direction(acts_a: np.ndarray, acts_e: np.ndarray, answers: Sequence[int]) -> tuple[np.ndarray, float]:
    """(v_h, σ_h) for one head from per-item activations when answering "A" (Very Accurate) and "E": label the
    A-activation 1 if the user's answer is > 3, else 0 (E gets the other label); items answered 0 or 3 are
    skipped. v = (μ_1 − μ_0)/‖μ_1 − μ_0‖; σ = population std of ⟨a, v⟩ over all labelled activations."""
    X, y = [], []
    for a, e, ans in zip(acts_a, acts_e, answers, strict=True):
        if ans in (0, 3):
            continue
        pos = ans > 3
        X += [a, e]
        y += [int(pos), int(not pos)]
    if not X:
        raise DataError("no labelled items (every answer is 0 or 3)")
    X_arr, y_arr = np.asarray(X, dtype=np.float64), np.asarray(y)
    if y_arr.min() == y_arr.max():
        raise DataError("labels are all one class")
    d = X_arr[y_arr == 1].mean(0) - X_arr[y_arr == 0].mean(0)
    norm = np.linalg.norm(d)
    if norm == 0:
        raise DataError("the two classes have the same mean activation; no direction")
    v = d / norm
    return v, float(np.std(X_arr @ v))


def o_proj_bias(W_o: np.ndarray, deltas: Mapping[int, np.ndarray], n_heads: int, head_dim: int) -> np.ndarray:
    """W_o · concat_h δ_h with δ_h = 0 for unselected heads: the bias that adds δ to `head_out` before o_proj."""
    full = np.zeros(n_heads * head_dim)
    for h, delta in deltas.items():
        if not 0 <= h < n_heads or len(delta) != head_dim:
            raise ConfigError(f"head {h} / width {len(delta)} does not fit {n_heads} heads of {head_dim}")
        full[h * head_dim:(h + 1) * head_dim] = delta
    return np.asarray(W_o, dtype=np.float64) @ full


def trait_mae(predicted: Mapping[str, Sequence[float | None]], truth: Mapping[str, Sequence[float]]) -> float:
    """Σ over traits of mean |predicted − true| (unparsable predictions, None, are skipped); a trait with items but
    no parsed prediction scores inf, so an α that breaks every answer never wins the search with MAE 0."""
    total = 0.0
    for t, true in truth.items():
        errs = [abs(p - g) for p, g in zip(predicted[t], true, strict=True) if p is not None]
        total += sum(errs) / len(errs) if errs else (float("inf") if len(true) else 0.0)
    return total


def search_alpha(answer: Callable[[float], Mapping[str, Sequence[float | None]]],
                 truth: Mapping[str, Sequence[float]], alphas: Sequence[float] = ALPHAS) -> tuple[float, dict]:
    """α* = argmin_α Σ_t MAE_t of `answer(α)` on the held-out items in `truth` (first α wins ties)."""
    table = {float(a): trait_mae(answer(a), truth) for a in alphas}
    best = min(table, key=lambda a: (table[a], list(table).index(a)))
    return best, table


def holdout_split(items_by_trait: Mapping[str, Sequence[str]], fraction: float = 0.2, seed: int = 0
                  ) -> tuple[list[str], list[str]]:
    """Stratified split of the user's known (train) items into (fit, held-out for α), by trait."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for _, items in sorted(items_by_trait.items()):
        order = list(rng.permutation(len(items)))
        k = max(1, round(fraction * len(items))) if len(items) > 1 else 0
        held += [items[i] for i in order[:k]]
        fit += [items[i] for i in order[k:]]
    return fit, held
