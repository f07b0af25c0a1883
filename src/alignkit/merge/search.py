"""Coefficient search for θ(λ) = θ_0 + Σ_k λ_k τ_k (spec wave2_selfalign_merge.md §5).

* `self_positioning`: gradient descent on λ only (θ_0 and every τ_k frozen), the loss evaluated on a balanced probe
  set; ∂L/∂λ_j = ⟨∇_θ L(θ(λ)), τ_j⟩ comes from autograd through `torch.func.functional_call`. The paper's
  optimizer, init and constraints are [uncertain]; the spec's recommendation (Adam, lr 0.01, 100 steps, init 1,
  optional box [0, 2]) is the default, every piece a parameter.
* `grid_search`: for non-differentiable probe metrics (mean Reward score, constraint accuracy): every point of a
  grid, metrics combined as an equal-weight average of per-metric z-scores across the points, argmax. With more
  than two task vectors a full grid is too large, so coordinate ascent over the same per-axis values replaces it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from alignkit.errors import ConfigError

DEFAULT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)


@dataclass
class SearchResult:
    lambdas: list[float]
    loss: float | None = None
    trace: list[list[Any]] = field(default_factory=list)  # [step, λ, value] rows (merge.json "trace")
    points: list[dict[str, Any]] = field(default_factory=list)  # grid: every point with its metrics and z-score

    def as_dict(self) -> dict[str, Any]:
        return {"lambdas": self.lambdas, "loss": self.loss, "trace": self.trace, "points": self.points}


def merged_params(base: Mapping[str, Tensor], vectors: Sequence[Mapping[str, Tensor]], lam: Tensor
                  ) -> dict[str, Tensor]:
    """θ(λ) as differentiable tensors (λ a 1-D tensor with grad); tensors absent from the vectors pass through."""
    out: dict[str, Tensor] = {}
    for k, b in base.items():
        if k not in vectors[0]:
            out[k] = b
            continue
        acc = b.to(lam.dtype) if b.is_floating_point() else b
        for j, tv in enumerate(vectors):
            acc = acc + lam[j] * tv[k].to(lam.dtype)
        out[k] = acc.to(b.dtype)
    return out


def self_positioning(loss_of_params: Callable[[dict[str, Tensor]], Tensor], base: Mapping[str, Tensor],
                     vectors: Sequence[Mapping[str, Tensor]], *, init: Sequence[float] | float = 1.0,
                     lr: float = 0.01, steps: int = 100, optimizer: Literal["adam", "sgd"] = "adam",
                     box: tuple[float, float] | None = None, dtype: torch.dtype = torch.float32,
                     log: Callable[[str], None] | None = None) -> SearchResult:
    """Minimise L(λ) = loss_of_params(θ(λ)) over λ ∈ R^K. `trace` rows are [step, λ before the step, L(λ)];
    the final row is the returned λ with its loss. `box` clamps λ after every step (projected descent)."""
    K = len(vectors)
    if K == 0:
        raise ConfigError("self_positioning needs at least one task vector")
    if steps < 0 or lr <= 0:
        raise ConfigError(f"steps must be >= 0 and lr > 0, got steps={steps}, lr={lr}")
    start = [float(init)] * K if isinstance(init, int | float) else [float(x) for x in init]
    if len(start) != K:
        raise ConfigError(f"init has {len(start)} values for {K} task vectors")
    lam = torch.tensor(start, dtype=dtype, requires_grad=True)
    opt: torch.optim.Optimizer = (torch.optim.Adam([lam], lr=lr) if optimizer == "adam"
                                  else torch.optim.SGD([lam], lr=lr))
    trace: list[list[Any]] = []
    for step in range(steps + 1):
        opt.zero_grad()
        loss = loss_of_params(merged_params(base, vectors, lam))
        if not torch.isfinite(loss):
            raise ConfigError(f"probe loss is not finite at λ={lam.detach().tolist()} (step {step}); lower lr or "
                              "set a box")
        trace.append([step, [round(x, 8) for x in lam.detach().tolist()], float(loss.detach())])
        if log and (step % 10 == 0 or step == steps):
            log(f"step {step}: λ={[round(x, 4) for x in lam.detach().tolist()]} L={float(loss.detach()):.6f}")
        if step == steps:
            break
        loss.backward()
        opt.step()
        if box is not None:
            with torch.no_grad():
                lam.clamp_(box[0], box[1])
    return SearchResult(lambdas=[float(x) for x in lam.detach().tolist()], loss=trace[-1][2], trace=trace)


def zscores(values: Sequence[float]) -> list[float]:
    """Standardise across grid points (population std); a constant metric contributes 0 everywhere."""
    n = len(values)
    mu = sum(values) / n
    sd = math.sqrt(sum((v - mu) ** 2 for v in values) / n)
    return [0.0 if sd == 0 else (v - mu) / sd for v in values]


def combine_metrics(points: list[dict[str, Any]]) -> list[float]:
    """Equal-weight average of per-metric z-scores across the points (higher is better for every metric)."""
    names = sorted(points[0]["metrics"])
    per_metric = [zscores([p["metrics"][m] for p in points]) for m in names]
    return [sum(z[i] for z in per_metric) / len(names) for i in range(len(points))]


def _pick(points: list[dict[str, Any]]) -> dict[str, Any]:
    z = combine_metrics(points)
    for p, zi in zip(points, z, strict=True):
        p["z"] = zi
    return max(points, key=lambda p: (p["z"], -points.index(p)))  # ties: the first point in grid order


def grid_search(evaluate: Callable[[list[float]], Mapping[str, float]], K: int,
                values: Sequence[float] = DEFAULT_GRID, *, coordinate_rounds: int = 2,
                start: Sequence[float] | None = None, log: Callable[[str], None] | None = None) -> SearchResult:
    """Evaluate `evaluate(λ) -> {metric: value}` on {values}^K (K ≤ 2) or by coordinate ascent (K > 2) and
    return the z-score argmax. Each distinct λ is evaluated once."""
    if K < 1:
        raise ConfigError("grid search needs at least one task vector")
    cache: dict[tuple[float, ...], dict[str, float]] = {}

    def ev(lam: Sequence[float]) -> dict[str, float]:
        key = tuple(round(float(x), 10) for x in lam)
        if key not in cache:
            cache[key] = {k: float(v) for k, v in evaluate(list(key)).items()}
            if log:
                log(f"λ={list(key)}: {cache[key]}")
        return cache[key]

    if K <= 2:
        # λ_1 varies fastest (numpy meshgrid order): exact ties go to the first point in this order. The spec's
        # grid toy has one, 0.7625 at both (0.75, 0.5) and (0.5, 0.75); this order gives the spec's (0.75, 0.5).
        grid = [list(reversed(p)) for p in itertools.product(values, repeat=K)]
        points = [{"lambdas": g, "metrics": ev(g)} for g in grid]
        best = _pick(points)
        return SearchResult(lambdas=best["lambdas"], points=points)
    # Coordinate ascent: sweep one axis at a time with the others fixed, keep the best, repeat; z-scores are taken
    # within each sweep (the only comparable set of points).
    cur = [float(x) for x in (start or [1.0] * K)]
    trace: list[list[Any]] = []
    for r in range(coordinate_rounds):
        for j in range(K):
            sweep = [{"lambdas": cur[:j] + [v] + cur[j + 1:], "metrics": ev(cur[:j] + [v] + cur[j + 1:])}
                     for v in values]
            cur = list(_pick(sweep)["lambdas"])
            trace.append([r * K + j, cur, None])
    points = [{"lambdas": list(k), "metrics": v} for k, v in cache.items()]
    return SearchResult(lambdas=cur, trace=trace, points=points)
