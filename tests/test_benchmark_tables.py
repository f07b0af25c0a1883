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
from spec_reject_scorers import partial_pairs, replay  # noqa: E402
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


def test_speculative_rejection_replay_follows_the_strategys_schedule_and_charges_rejected_rows_their_prefix() -> None:
    # one prompt, four rows: row 0 ends (3 tokens) before the checkpoint and is a complete candidate
    data = [{"token_ids": [[1] * 3, [1] * 10, [1] * 10, [1] * 10], "final": [0.0, 1.0, 0.5, 0.2]}]
    ranker = {4: {(0, 1): 0.1, (0, 2): 0.9, (0, 3): 0.5}}
    selected, tokens = replay(data, ranker, [4], keep=0.25)
    # ceil(0.25 * 3) = 1 survivor (row 2); rows 1 and 3 stop at 4 tokens: 3 + 10 + 2 * 4
    assert selected == [0.5] and tokens == 21
    oracle = {4: {(0, k): f for k, f in enumerate(data[0]["final"])}}
    assert replay(data, oracle, [4], keep=0.25) == ([1.0], 21)
    ties = {4: {(0, 1): 0.0, (0, 2): 0.0, (0, 3): 0.0}}  # ties keep the earlier row
    assert replay(data, ties, [4], keep=0.25)[0] == [1.0]
    # two checkpoints: ceil(0.5 * 3) = 2 go on at 4 (rows 2, 3; row 1 stops at 4 tokens), then 1 of 2 at 8
    # (row 3; row 2 stops at 8); the answer is the best complete row by the final reward, row 3's 0.2
    two = {4: ranker[4], 8: {(0, 2): 0.0, (0, 3): 1.0}}
    assert replay(data, two, [4, 8], keep=0.5) == ([0.2], 3 + 4 + 8 + 10)


def test_partial_answer_pairs_prefer_the_row_whose_full_answer_scored_higher() -> None:
    class Chars:  # token ids are characters
        def decode(self, ids, skip_special_tokens=True):  # noqa: ANN001, ANN201, ARG002
            return "".join(chr(i) for i in ids)

    rows = ["aaxx", "abyy", "aazz", "b"]  # rows 0 and 2 share their first two tokens; row 3 ends before c = 2
    data = [{"id": "p", "prompt": "q", "token_ids": [[ord(ch) for ch in r] for r in rows],
             "final": [1.0, 0.5, 0.0, 1.0]}]
    pairs = partial_pairs(data, Chars(), [2], per=10)
    got = sorted((p["chosen"], p["rejected"]) for p in pairs)
    # "aa" (rows 0 and 2) vs "ab": 1.0 > 0.5 and 0.5 > 0.0; rows 0 and 2 read alike at c = 2, so no pair
    assert got == [("aa", "ab"), ("ab", "aa")]
    assert all(p["metadata"] == {"id": "p", "checkpoint": 2} for p in pairs)
    assert len(partial_pairs(data, Chars(), [2], per=1)) == 1
