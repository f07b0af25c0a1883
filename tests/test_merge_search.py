"""Merge-coefficient search against the spec's worked numbers (wave2_selfalign_merge.md §5): the quadratic toy for
the gradient mode (three GD steps, the closed-form optimum, task arithmetic's loss) and the grid toy's argmax."""

from __future__ import annotations

import pytest
import torch

from alignkit.errors import ConfigError
from alignkit.merge.search import combine_metrics, grid_search, self_positioning, zscores

BASE = {"theta": torch.zeros(2, dtype=torch.float64)}
VECTORS = [{"theta": torch.tensor([1.0, 0.0], dtype=torch.float64)},
           {"theta": torch.tensor([0.0, 2.0], dtype=torch.float64)}]
OPTIMA = [torch.tensor([1.0, 0.2], dtype=torch.float64), torch.tensor([0.1, 2.0], dtype=torch.float64)]


def toy_loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
    theta = params["theta"]
    return 0.5 * torch.stack([((theta - c) ** 2).sum() for c in OPTIMA]).mean()


def test_gradient_steps_match_the_worked_example() -> None:
    res = self_positioning(toy_loss, BASE, VECTORS, init=0.5, lr=0.2, steps=3, optimizer="sgd",
                           dtype=torch.float64)
    lams = [row[1] for row in res.trace]
    losses = [row[2] for row in res.trace]
    assert losses[0] == pytest.approx(0.5125, abs=1e-12)
    assert lams[1] == pytest.approx([0.51, 0.54], abs=1e-9) and losses[1] == pytest.approx(0.50725, abs=1e-9)
    assert lams[2] == pytest.approx([0.518, 0.548], abs=1e-9) and losses[2] == pytest.approx(0.506770, abs=1e-6)
    assert lams[3] == pytest.approx([0.5244, 0.5496], abs=1e-9) and losses[3] == pytest.approx(0.506578, abs=1e-6)


def test_gradient_mode_reaches_the_closed_form_optimum() -> None:
    res = self_positioning(toy_loss, BASE, VECTORS, init=0.5, lr=0.2, steps=300, optimizer="sgd",
                           dtype=torch.float64)
    assert res.lambdas == pytest.approx([0.55, 0.55], abs=1e-3)
    assert res.loss == pytest.approx(0.50625, abs=1e-6)
    # plain task arithmetic, λ = (1, 1), is twice as bad on this probe
    ta = self_positioning(toy_loss, BASE, VECTORS, init=1.0, lr=0.2, steps=0, optimizer="sgd", dtype=torch.float64)
    assert ta.loss == pytest.approx(1.0125, abs=1e-12)


def test_adam_with_a_box_stays_inside_it() -> None:
    res = self_positioning(toy_loss, BASE, VECTORS, init=1.0, lr=0.1, steps=50, box=(0.7, 2.0),
                           dtype=torch.float64)
    assert all(0.7 <= x <= 2.0 for row in res.trace for x in row[1])
    assert res.lambdas == pytest.approx([0.7, 0.7], abs=1e-6)  # the optimum 0.55 is outside: projected to the edge


def _grid_toy(lam: list[float]) -> dict[str, float]:
    a, b = lam
    return {"probe": a + 1.5 * b - 0.6 * a * a - b * b - 0.4 * a * b}


def test_grid_selects_the_worked_argmax() -> None:
    res = grid_search(_grid_toy, 2, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert res.lambdas == [0.75, 0.5]
    best = max(res.points, key=lambda p: p["z"])
    assert best["metrics"]["probe"] == pytest.approx(0.7625, abs=1e-12)
    assert len(res.points) == 25
    # (0.5, 0.75) ties exactly at 0.7625; the documented tie-break (λ_1 fastest, first wins) gives the spec's point
    tie = next(p for p in res.points if p["lambdas"] == [0.5, 0.75])
    assert tie["metrics"]["probe"] == pytest.approx(0.7625, abs=1e-12)


def test_coordinate_ascent_for_three_vectors_finds_a_separable_optimum() -> None:
    calls: list[tuple[float, ...]] = []

    def f(lam: list[float]) -> dict[str, float]:
        calls.append(tuple(lam))
        return {"m": -sum((x - t) ** 2 for x, t in zip(lam, (0.25, 1.0, 0.5), strict=True))}

    res = grid_search(f, 3, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert res.lambdas == [0.25, 1.0, 0.5]
    assert len(calls) == len(set(calls))  # each point evaluated once


def test_zscores_weigh_metrics_equally_whatever_their_scale() -> None:
    assert zscores([1.0, 1.0]) == [0.0, 0.0]
    points = [{"metrics": {"a": 0.0, "b": 100.0}}, {"metrics": {"a": 1.0, "b": 0.0}}]
    assert combine_metrics(points) == pytest.approx([0.0, 0.0])  # one metric each way, same size of effect


def test_bad_search_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="init has 3 values"):
        self_positioning(toy_loss, BASE, VECTORS, init=[1, 1, 1])
    with pytest.raises(ConfigError):
        grid_search(_grid_toy, 0)
