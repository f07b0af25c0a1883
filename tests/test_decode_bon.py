"""Best-of-N, MV, WMV, MBR (spec A1) and the analytic BoN KL."""

from __future__ import annotations

import math

import pytest

from alignkit.analysis import bon_distribution, bon_kl, bon_kl_empirical, bon_kl_from_samples
from alignkit.decode.bon import (
    best_of_n,
    last_boxed,
    last_number,
    majority_vote,
    mbr_select,
    rouge1_f1,
    select_best,
    vote_weights,
    weighted_vote,
)
from alignkit.decode.hf import HFSampler
from alignkit.decode.toy import EOS, ToySampler, fixed_dist
from alignkit.errors import ConfigError
from alignkit.models import load_model
from alignkit.rewards.base import RewardResult


def length_reward(prompts, completions, **context):
    return RewardResult([float(len(c)) for c in completions])


def test_bon_kl_matches_spec_table() -> None:
    table = {1: 0.0, 2: 0.193, 4: 0.636, 8: 1.204, 16: 1.835, 32: 2.497, 64: 3.175, 128: 3.860, 256: 4.549,
             1024: 5.932}
    for n, v in table.items():
        assert bon_kl(n) == pytest.approx(v, abs=6e-4)
    assert bon_kl(4) == pytest.approx(0.6362944, abs=1e-7)
    with pytest.raises(ConfigError):
        bon_kl(0)


def test_empirical_kl_is_below_the_bound_and_approaches_it() -> None:
    probs, rewards = [0.5, 0.3, 0.2], [0.0, 1.0, 2.0]
    pi = bon_distribution(probs, rewards, 4)
    assert sum(pi) == pytest.approx(1.0)
    assert pi[2] == pytest.approx(1 - 0.8 ** 4)
    assert bon_kl_empirical(probs, rewards, 4) <= bon_kl(4)
    assert bon_kl_from_samples(list(range(2000)), 4) == pytest.approx(bon_kl(4), abs=2e-3)
    assert bon_kl_empirical([1.0], [0.0], 8) == 0.0  # one possible output: BoN equals p


def test_selection_rules() -> None:
    assert select_best([1.0, 3.0, 3.0]) == 1  # ties to first
    assert majority_vote(["4", "5", "5", "4", None]) == ("4", 0)  # tie -> first occurrence
    assert majority_vote([None, None]) == (None, 0)
    w = vote_weights([0.0, math.log(3.0)], beta=1.0)
    assert w == pytest.approx([0.25, 0.75])
    # "4" twice with low reward vs "7" once with high reward: softmax weighting decides
    assert weighted_vote(["4", "4", "7"], [0.0, 0.0, 2.0], beta=1.0)[0] == "7"
    assert weighted_vote(["4", "4", "7"], [0.0, 0.0, 2.0], beta=10.0)[0] == "4"
    assert rouge1_f1([1, 2, 3], [1, 2, 4]) == pytest.approx(2 / 3)
    assert mbr_select(["a b c", "a b", "x y"], lambda a, b: rouge1_f1(a.split(), b.split())) == 0
    assert last_number("so 1,200 or 3.5.") == "3.5" and last_boxed(r"x \boxed{\frac{1}{2}} y") == r"\frac{1}{2}"


def test_bon_selected_reward_is_at_least_mean_and_accounting() -> None:
    model, tok = load_model("tiny-random")
    sampler = HFSampler(model, tok)
    prompts = ["Hi", "Tell me a story"]
    res = best_of_n(sampler, length_reward, prompts, n=6, max_new_tokens=8, seed=0)
    for r in res:
        assert r.info["selected_reward"] >= r.info["mean_reward"]
        assert r.info["selected_reward"] == max(r.scores)
        assert r.completion == r.candidates[r.scores.index(max(r.scores))]
        assert r.compute.reward_calls == 6
    assert sum(r.compute.forward_tokens for r in res) == sampler.compute.forward_tokens
    assert sum(r.compute.generated_tokens for r in res) == sampler.compute.generated_tokens


def test_votes_and_contexts_on_toy() -> None:
    toy = ToySampler(["1", "2", EOS], fixed_dist({"1": 0.6, "2": 0.3, EOS: 0.1}))
    seen: list = []

    def keyword(prompts, completions, constraints=None, **kw):
        seen.append(constraints)
        return [float(k in c) for c, k in zip(completions, constraints, strict=True)]

    res = best_of_n(toy, keyword, ["p", "q"], n=5, max_new_tokens=1, seed=4, contexts=[{"constraints": "2"},
                                                                                     {"constraints": "1"}])
    assert seen[0] == ["2"] * 5 + ["1"] * 5  # per-prompt context repeated for each of its completions
    assert "2" in res[0].completion and "1" in res[1].completion
    mv = best_of_n(toy, None, ["p"], n=9, max_new_tokens=1, seed=4, select_by="vote")[0]
    assert mv.compute.reward_calls == 0 and mv.info["answer"] == mv.completion
    with pytest.raises(ConfigError, match="needs a reward"):
        best_of_n(toy, None, ["p"], n=2)
