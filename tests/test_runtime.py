"""`alignkit.runtime`: the helpers every trainer shares (issue #22 item 5), checked against hand-computed values."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from alignkit.runtime import make_scheduler, seed_everything, split_eval


def _factors(kind: str, warmup: int, total: int, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, kind, warmup, total)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_schedule_warms_up_then_decays_to_zero() -> None:
    # transformers.get_scheduler's rule (issue #16.8, what TRL's lr_scheduler_type means): warmup 2 of 10 is s/2
    # for s < 2, then progress p = (s-2)/8.
    assert _factors("linear", 2, 10, 11) == pytest.approx(
        [0.0, 1 / 2, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0])
    cosine = _factors("cosine", 2, 10, 11)
    assert cosine[6] == pytest.approx(0.5) and cosine[4] == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))
    assert cosine[10] == pytest.approx(0.0, abs=1e-12)
    assert _factors("constant", 0, 10, 3) == [1.0, 1.0, 1.0]
    assert _factors("constant", 2, 10, 4) == [0.0, 0.5, 1.0, 1.0]  # constant honours warmup (constant_with_warmup)


def test_seed_everything_seeds_python_numpy_and_torch() -> None:
    seed_everything(3)
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(3)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_split_eval_holds_out_a_rounded_fraction_in_order() -> None:
    train, held = split_eval(list(range(10)), 0.25, seed=0)
    assert len(held) == 2 and len(train) == 8  # round(2.5) = 2 (banker's rounding)
    assert sorted(train + held) == list(range(10)) and train == sorted(train) and held == sorted(held)
    assert split_eval(list(range(10)), 0.25, seed=0) == (train, held)
    assert split_eval([1, 2, 3], 0.0, seed=0) == ([1, 2, 3], [])
    assert len(split_eval([1, 2, 3], 0.01, seed=0)[1]) == 1  # at least one example is held out
