"""Fixed-rule merges from an existing library, to compare the searched coefficients against: PEFT's
`peft.utils.merge_utils` (`task_arithmetic`, `ties`, `dare_linear`, `dare_ties`) applied per tensor to full-weight
task vectors, and `linear` (a weighted average of the checkpoints' weights, the classic "model soup").

TIES (Yadav et al. 2023, arXiv 2306.01708): keep the top-`density` fraction of each task vector by magnitude,
elect a sign per parameter (sum of weighted values, PEFT's `total`), and average only the agreeing values.
These methods combine task vectors that start at the *base*, so they are computed from `anchor="base"` vectors
whatever anchor the search used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignkit.errors import ConfigError
from alignkit.merge.vectors import State, TaskVectors

FIXED_METHODS = ("linear", "task_arithmetic", "ties", "dare_linear", "dare_ties")


def to_base_anchor(tv: TaskVectors) -> TaskVectors:
    """Re-express chained vectors (τ_k = θ_k − θ_{k−1}) as θ_k − θ_0 (cumulative sums); base-anchored pass."""
    if all(a == "base" for a in tv.anchors):
        return tv
    out: list[State] = []
    acc: State | None = None
    for v in tv.vectors:
        acc = {k: t.clone() for k, t in v.items()} if acc is None else {k: acc[k] + v[k] for k in v}
        out.append(acc)
    return TaskVectors(tv.base, out, tv.names, ["base"] * len(out))


def fixed_merge(tv: TaskVectors, method: str, weights: Sequence[float] | None = None, *, density: float = 0.5,
                seed: int = 0) -> State:
    """θ_0 + merge_rule({τ_k}, weights) per tensor. `linear` uses weights normalised to sum 1 (default uniform);
    the others use the raw weights (default 1 each, PEFT's convention)."""
    from peft.utils import merge_utils

    if method not in FIXED_METHODS:
        raise ConfigError(f"method must be one of {FIXED_METHODS}, got {method!r}")
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    tv = to_base_anchor(tv)
    K = len(tv.vectors)
    w = [1.0] * K if weights is None else [float(x) for x in weights]
    if len(w) != K:
        raise ConfigError(f"{len(w)} weights for {K} checkpoints")
    if method == "linear":
        total = sum(w)
        if total == 0:
            raise ConfigError("linear merge weights sum to 0")
        w = [x / total for x in w]
    wt = torch.tensor(w, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    out: State = {}
    for k, b in tv.base.items():
        if k not in tv.vectors[0]:
            out[k] = b.clone()
            continue
        tensors = [v[k].float() for v in tv.vectors]
        if method in ("linear", "task_arithmetic"):
            delta = merge_utils.task_arithmetic(tensors, wt)
        elif method == "ties":
            delta = merge_utils.ties(tensors, wt, density)
        else:  # DARE drops at random: fork the RNG so results depend on `seed` only
            with torch.random.fork_rng():
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                delta = (merge_utils.dare_linear(tensors, wt, density) if method == "dare_linear"
                         else merge_utils.dare_ties(tensors, wt, density))
        out[k] = (b.float() + delta).to(b.dtype)
    return out
