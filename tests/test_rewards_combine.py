"""Transforms and combinations (objectives.md §8 LSC, §9.1 group normalisation)."""

from __future__ import annotations

import math

import pytest

from alignkit.errors import RewardError
from alignkit.rewards.base import FunctionReward
from alignkit.rewards.combine import (
    all_of,
    batch_normalize,
    clip,
    group_normalize,
    log_sigmoid,
    log_sigmoid_transform,
    reduce_reference,
    weighted_sum,
)


def value_reward(name: str = "value") -> FunctionReward:
    """Score = the completion parsed as a float (makes expected numbers obvious)."""
    return FunctionReward(lambda prompts, completions: [float(c) for c in completions], name=name)


def test_lsc_single_and_and_worked_examples() -> None:
    u = log_sigmoid_transform(value_reward(), ref=0.0)(["x"], ["1"])
    assert u.scores[0] == pytest.approx(-0.3132617, abs=1e-7)
    both = all_of(log_sigmoid_transform(value_reward("a"), ref=0.0),
                  log_sigmoid_transform(value_reward("b"), ref=2.0))(["x"], ["1"])
    assert both.scores[0] == pytest.approx(-1.6265234, abs=1e-7)  # (1 - 0) and (1 - 2)
    assert all_of(value_reward("a"), value_reward("b"), ref=0.0)(["x"], ["1"]).scores[0] == pytest.approx(
        2 * -0.3132617, abs=1e-7)


def test_lsc_is_stable_and_nonpositive() -> None:
    assert log_sigmoid(-1000.0) == pytest.approx(-1000.0)
    assert log_sigmoid(1000.0) == 0.0
    assert all(log_sigmoid(x) <= 0 for x in (-5, 0, 5))


def test_reference_statistics() -> None:
    xs = [1.0, 2.0, 4.0, 10.0]
    assert reduce_reference(xs, "mean") == 4.25
    assert reduce_reference(xs, "median") == 3.0
    assert reduce_reference(xs, "quantile:0.9") == pytest.approx(8.2)  # numpy linear interpolation
    assert reduce_reference(xs, "q0") == 1.0
    with pytest.raises(RewardError, match="statistic"):
        reduce_reference(xs, "mode")


def test_per_prompt_reference_from_samples_with_global_median_fallback() -> None:
    t = log_sigmoid_transform(value_reward(), statistic="median")
    table = t.fit_reference(["a", "b"], [["0", "1", "5"], ["3"]])
    assert table == {"a": 1.0, "b": 3.0} and t.fallback == 2.0
    res = t(["a", "b", "unseen"], ["1", "4", "2"])
    assert res.scores == pytest.approx([math.log(0.5), log_sigmoid(1.0), math.log(0.5)])
    assert res.info["reference_fallbacks"] == 1
    # Reference samples in the context are scored on the fly; precomputed references win over them.
    t2 = log_sigmoid_transform(value_reward(), statistic="mean")
    res = t2(["a", "b"], ["2", "2"], reference_samples=[["0", "2"], ["9"]], reference_reward=[None, 2.0])
    assert res.scores == pytest.approx([log_sigmoid(1.0), math.log(0.5)])
    with pytest.raises(RewardError, match="no reference reward"):
        log_sigmoid_transform(value_reward())(["a"], ["1"])


def test_weighted_sum_group_batch_clip() -> None:
    ws = weighted_sum([value_reward("a"), FunctionReward(lambda p, c: [1.0] * len(c), name="one")], [2.0, -1.0])
    res = ws(["p", "p"], ["1", "3"])
    assert res.scores == [1.0, 5.0] and res.attributes[0] == {"a": 1.0, "one": 1.0}
    g = group_normalize(value_reward())(["p"] * 4 + ["q"], ["0.1", "0.3", "0.2", "0.0", "7"])
    assert g.scores[:4] == pytest.approx([-0.3869986, 1.1609957, 0.3869986, -1.1609957], abs=1e-6)
    assert g.scores[4] == 0.0 and g.info == {"groups": 2, "flat_groups": 1}
    by_group = group_normalize(value_reward())(["p", "q"], ["1", "3"], group=[0, 0])
    assert by_group.scores[0] < 0 < by_group.scores[1]
    b = batch_normalize(value_reward())(["p"] * 3, ["1", "2", "3"])
    assert b.scores == pytest.approx([-1.2247449, 0.0, 1.2247449], abs=1e-6)
    assert clip(value_reward(), -1, 1)(["p"] * 3, ["-5", "0.5", "5"]).scores == [-1.0, 0.5, 1.0]


def test_combinators_name_the_failing_reward() -> None:
    bad = FunctionReward(lambda p, c: [float("nan")] * len(c), name="broken")
    with pytest.raises(RewardError, match="reward 'broken' returned a non-finite score"):
        weighted_sum([value_reward(), bad])(["p"], ["1"])
    short = FunctionReward(lambda p, c: [1.0], name="short")
    with pytest.raises(RewardError, match="reward 'short' returned 1 scores for 2 completions"):
        log_sigmoid_transform(short, ref=0.0)(["p", "q"], ["1", "2"])
