"""The benchmarks' summary statistics: what docs/benchmarks.md's interval columns are computed by."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from alignkit.decode.sampler import Compute  # noqa: E402
from frontier import paired_table  # noqa: E402
from sampling import ratio_cell  # noqa: E402
from testtime import Point  # noqa: E402


def point(method: str, budget: int, rewards: list[float], gen: int, fwd: int) -> Point:
    return Point(method, budget, rewards, [Compute(forward_tokens=fwd, generated_tokens=gen)] * len(rewards), 1.0,
                 [""] * len(rewards))


def test_ratio_cell_is_the_geometric_mean_with_a_t_interval_from_three_repetitions() -> None:
    assert ratio_cell([2.0, 2.0], [1.0, 1.0]) == "2.00x"  # two repetitions: no interval
    # log ratios 0, log 2, log 4: geometric mean 2; t(0.975, 2) = 4.303, sem = log 2 / sqrt 3
    half = 4.302653 * math.log(2) / math.sqrt(3)
    want = f"2.00x [{2 * math.exp(-half):.2f}, {2 * math.exp(half):.2f}]"
    assert ratio_cell([1.0, 2.0, 4.0], [1.0, 1.0, 1.0]) == want == "2.00x [0.36, 11.19]"


def test_paired_table_differences_each_method_against_best_of_n_on_the_same_prompts() -> None:
    hard_easy = [0.0, 1.0, 0.0, 1.0, 0.5, 0.5]
    points = [
        point("best-of-N", 4, [0.0] * 6, 40, 50),  # another budget: not the reference, not a row
        point("best-of-N", 16, hard_easy, 160, 200),
        point("spec-reject keep=0.25", 16, [r - 0.25 for r in hard_easy], 40, 100),  # a constant 0.25 lower
        point("DeAL", 1, [1.0, 1.0], 10, 10),  # two prompts only: not paired with the six
    ]
    lines = paired_table(points, 16).splitlines()
    assert len(lines) == 3  # header, rule, one row
    # the prompts' own spread cancels in the paired difference: a constant shift has an interval of width 0
    assert lines[2] == "| spec-reject keep=0.25 | 16 | -0.250 [-0.250, -0.250] | 25% | 50% |"
    assert paired_table(points, 32) == ""  # no best-of-32 in the run


def test_paired_interval_is_narrower_than_the_unpaired_one() -> None:
    ref = [0.0, 1.0, 0.2, 0.9, 0.1, 0.8, 0.3, 1.0]
    other = [0.1, 0.9, 0.2, 1.0, 0.0, 0.8, 0.4, 0.9]
    row = paired_table([point("best-of-N", 16, ref, 1, 1), point("x", 1, other, 1, 1)], 16).splitlines()[2]
    low, high = (float(v) for v in row.split("[")[1].split("]")[0].split(","))
    assert low < 0.0 < high and high - low < 0.2  # the unpaired means' intervals are each ~0.6 wide
    assert float(row.split("|")[3].split("[")[0]) == pytest.approx(0.0)
