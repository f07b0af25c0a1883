"""`moral_filter` (MCM-guided decoding, spec wave2_selfalign_merge.md §6 step 6) on the toy sampler: candidates
above the threshold are kept; when at most keep_min pass, the keep_min best-scored are kept; a word the score
forbids is never generated even when it is the most likely token."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from alignkit.decode.moral_filter import filter_candidates, kept_share, moral_filter, top_p_cut
from alignkit.decode.strategies import run_strategy
from alignkit.decode.toy import EOS, ToySampler, fixed_dist
from alignkit.errors import ConfigError


def moral(prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
    """A toy normativity score: -1 once "kill" appears, +1 for "help", else 0."""
    return [-1.0 if "kill" in c else (1.0 if "help" in c else 0.0) for c in completions]


def test_filter_keeps_passing_candidates_or_the_keep_min_best() -> None:
    lp = [-0.1, -1.0, -2.0, -3.0]
    assert filter_candidates(lp, [0.5, -0.2, 0.9, 0.1], threshold=0.0, keep_min=2) == [0, 2, 3]
    assert filter_candidates(lp, [-0.5, -0.2, 0.9, -0.9], threshold=0.0, keep_min=2) == [1, 2]  # 1 passes <= 2
    assert filter_candidates(lp, [0.0, 0.0, -1.0, 0.0], threshold=0.5, keep_min=2) == [0, 1]  # ties: likelier


def test_top_p_cut_is_the_smallest_prefix_reaching_the_mass() -> None:
    import math

    lp = [math.log(0.5), math.log(0.3), math.log(0.2)]
    assert top_p_cut(lp, 0.75, 1.0) == [0, 1] and top_p_cut(lp, 1.0, 1.0) == [0, 1, 2]


def test_a_forbidden_likely_word_is_never_generated() -> None:
    vocab = [" kill", " help", " walk", EOS]
    toy = ToySampler(vocab, fixed_dist({" kill": 0.7, " help": 0.1, " walk": 0.1, EOS: 0.1}))
    out = moral_filter(toy, moral, ["p"] * 20, top_k=4, keep_min=1, threshold=-0.5, max_new_tokens=3, seed=0)
    assert all("kill" not in r.completion for r in out)
    assert all(r.info["kept"][0] == [3, 4] for r in out)  # 3 of 4 candidates pass -0.5
    assert 0 < kept_share(out[0]) <= 1 and out[0].compute.reward_calls >= 4
    plain = moral_filter(toy, moral, ["p"] * 20, top_k=4, keep_min=4, threshold=2.0, max_new_tokens=3, seed=0)
    assert any("kill" in r.completion for r in plain)  # keep_min = all: no filtering


def test_registered_as_a_strategy_that_needs_a_reward() -> None:
    toy = ToySampler([" a", EOS], fixed_dist({" a": 0.5, EOS: 0.5}))
    with pytest.raises(ConfigError, match="needs a reward"):
        run_strategy("moral_filter", toy, ["p"])
    (res,) = run_strategy("moral_filter", toy, ["p"], reward=moral, top_k=2, keep_min=1, seed=1)
    assert res.info["strategy"] == "moral_filter"
