"""QAlign (spec A2) on an enumerable toy: exact acceptance ratios and convergence to p(y)·exp(r(y)/β)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from alignkit.decode.qalign import acceptance_log_ratio, acceptance_probability, qalign
from alignkit.decode.toy import EOS, ToySampler, fixed_dist
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardResult


def count_a(prompts, completions, **context):  # reward: number of "a" tokens
    return RewardResult([float(c.count("a")) for c in completions])


def test_acceptance_ratio_hand_computed() -> None:
    # (r' - r)/β + log|y| - log|y'| = (1.5 - 2)/1 + log(3/5)
    assert acceptance_log_ratio(2.0, 1.5, 3, 5, beta=1.0) == pytest.approx(-0.5 + math.log(3 / 5))
    assert acceptance_probability(2.0, 1.5, 3, 5, beta=1.0) == pytest.approx(0.6065307 * 0.6, abs=1e-7)
    assert acceptance_probability(1.0, 2.5, 4, 2, beta=0.5) == 1.0
    assert acceptance_log_ratio(0.0, 100.0, 1, 1, beta=0.5) == 20.0  # clamp at ±20
    assert acceptance_log_ratio(100.0, 0.0, 1, 1, beta=0.5) == -20.0


def two_output_toy() -> ToySampler:
    """Outputs A = [a, EOS] and B = [b, b, EOS], each with p = 1/2."""
    def dist(prompt, toks):
        if not toks:
            return {"a": 0.5, "b": 0.5}
        if toks == ("b",):
            return {"b": 1.0}
        return {EOS: 1.0}
    return ToySampler(["a", "b", EOS], dist)


def test_chain_uses_hand_computed_acceptance_and_reaches_target() -> None:
    toy = two_output_toy()
    reward = lambda p, c, **k: [1.0 if c == "bb" else 0.0 for c in c]  # noqa: E731
    res = qalign(toy, reward, ["x"] * 60, steps=150, beta=1.0, max_new_tokens=5, seed=0, select_by="last")
    b_to_a = math.log(math.e ** -1 * 3 / 2)  # from B (len 3, r=1) to A (len 2, r=0)
    seen = 0
    for r in res:
        lengths, props = r.info["chain_lengths"], r.info["proposal_lengths"]
        for t, la in enumerate(r.info["log_alphas"]):
            if lengths[t] == 3 and props[t] == 2:
                assert la == pytest.approx(b_to_a)
                seen += 1
            if lengths[t] == 2 and props[t] == 3:
                assert la == pytest.approx(1 + math.log(2 / 3))
    assert seen > 50
    states = Counter(n for r in res for n in r.info["chain_lengths"][20:])
    target_b = math.e / (1 + math.e)  # p·exp(r/β): (1/2·1) : (1/2·e)
    assert states[3] / sum(states.values()) == pytest.approx(target_b, abs=0.04)


def test_chain_converges_in_total_variation() -> None:
    toy = ToySampler(["a", "b", EOS], fixed_dist({"a": 0.5, "b": 0.3, EOS: 0.2}))
    max_new, beta = 3, 0.7
    p = toy.enumerate_outputs("x", max_new)
    target = {y: q * math.exp(y.count(0) / beta) for y, q in p.items()}  # token 0 = "a"
    z = sum(target.values())
    target = {y: v / z for y, v in target.items()}
    res = qalign(toy, count_a, ["x"] * 200, steps=120, beta=beta, max_new_tokens=max_new, seed=1,
                 select_by="last", burn_in=20)
    # chain states as token tuples are not kept in info; rebuild from texts + lengths (unique for this alphabet)
    emp: Counter = Counter()
    for r in res:
        for txt, n in zip(r.info["chain_texts"], r.info["chain_lengths"], strict=True):
            emp[(txt, n)] += 1
    total = sum(emp.values())
    key = lambda y: ("".join("ab"[t] for t in y if t != 2), len(y))  # noqa: E731
    tv = 0.5 * sum(abs(emp.get(key(y), 0) / total - target[y]) for y in target)
    base_tv = 0.5 * sum(abs(p[y] - target[y]) for y in target)
    assert base_tv > 0.2, "the target must differ clearly from the base"
    assert tv < 0.03
    assert 0.1 < res[0].info["acceptance_rate"] <= 1.0


def test_selection_and_accounting() -> None:
    toy = ToySampler(["a", "b", EOS], fixed_dist({"a": 0.5, "b": 0.3, EOS: 0.2}))
    res = qalign(toy, count_a, ["x", "y"], steps=10, beta=1.0, max_new_tokens=4, seed=3, select_by="vote",
                 burn_in=2, thin=2)
    for r in res:
        assert len(r.candidates) == len(range(2, 11, 2)) == len(r.scores)
        assert r.compute.reward_calls == 11
        assert r.completion == Counter(r.candidates).most_common(1)[0][0]
    assert toy.compute.forward_tokens == sum(r.compute.forward_tokens for r in res)
    assert toy.compute.generated_tokens == sum(r.compute.generated_tokens for r in res)
    again = qalign(toy, count_a, ["x", "y"], steps=10, beta=1.0, max_new_tokens=4, seed=3)
    first = qalign(toy, count_a, ["x", "y"], steps=10, beta=1.0, max_new_tokens=4, seed=3)
    assert [r.info["chain_rewards"] for r in again] == [r.info["chain_rewards"] for r in first]


def test_bad_settings() -> None:
    toy = two_output_toy()
    with pytest.raises(ConfigError, match="beta"):
        qalign(toy, count_a, ["x"], steps=2, beta=0)
    with pytest.raises(ConfigError, match="burn_in"):
        qalign(toy, count_a, ["x"], steps=2, burn_in=5)


def test_pooled_chains_reach_the_target_and_keep_accounting() -> None:
    toy = ToySampler(["a", "b", EOS], fixed_dist({"a": 0.5, "b": 0.3, EOS: 0.2}))
    max_new, beta = 3, 0.7
    p = toy.enumerate_outputs("x", max_new)
    target = {y: q * math.exp(y.count(0) / beta) for y, q in p.items()}
    z = sum(target.values())
    res = qalign(toy, count_a, ["x"] * 25, steps=120, beta=beta, max_new_tokens=max_new, seed=1,
                 select_by="last", burn_in=20, chains=8)  # 25 prompts x 8 chains = the 200 chains above
    emp: Counter = Counter()
    for r in res:
        assert r.info["n_chains"] == 8 and len(r.info["chains"]) == 8
        assert len(r.candidates) == 8 * 101 and r.compute.reward_calls == 8 * 121
        for chain in r.info["chains"]:
            for txt, n in zip(chain["chain_texts"][20:], chain["chain_lengths"][20:], strict=True):
                emp[(txt, n)] += 1
    total = sum(emp.values())
    key = lambda y: ("".join("ab"[t] for t in y if t != 2), len(y))  # noqa: E731
    assert 0.5 * sum(abs(emp.get(key(y), 0) / total - v / z) for y, v in target.items()) < 0.03
    assert toy.compute.forward_tokens == sum(r.compute.forward_tokens for r in res)


def test_one_chain_per_prompt_is_unchanged_by_the_chains_option() -> None:
    toy = ToySampler(["a", "b", EOS], fixed_dist({"a": 0.5, "b": 0.3, EOS: 0.2}))
    a = qalign(toy, count_a, ["x", "y"], steps=10, max_new_tokens=4, seed=3)
    b = qalign(toy, count_a, ["x", "y"], steps=10, max_new_tokens=4, seed=3, chains=1)
    assert [r.info["chain_texts"] for r in a] == [r.info["chain_texts"] for r in b]
    assert "chains" not in a[0].info
    with pytest.raises(ConfigError, match="chains"):
        qalign(toy, count_a, ["x"], steps=2, chains=0)


def test_cached_sampler_runs_the_same_chains_at_about_one_forward_token_per_generated_token() -> None:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tok = load_model("tiny-random")
    reward = lambda p, c, **k: [float(x.count("e")) for x in c]  # noqa: E731
    prompts = ["Hi", "What is 2 + 2?"]
    runs = []
    for mb in (0, 64):
        s = HFSampler(model, tok, prefix_cache_mb=mb)
        res = qalign(s, reward, prompts, steps=16, max_new_tokens=24, seed=5, chains=2, select_by="last")
        runs.append((res, s.compute.copy()))
    (plain, c0), (cached, c1) = runs
    for a, b in zip(plain, cached, strict=True):
        assert [c["chain_texts"] for c in a.info["chains"]] == [c["chain_texts"] for c in b.info["chains"]]
    assert c0.generated_tokens == c1.generated_tokens
    # without the cache each proposal re-encodes prompt + kept prefix; with it only the new tokens are processed
    assert c0.forward_tokens > 2 * c0.generated_tokens
    assert c1.forward_tokens <= 1.3 * c1.generated_tokens
    assert c1.forward_tokens + c1.cached_tokens == c0.forward_tokens + c0.cached_tokens  # same contexts
    assert sum(r.compute.forward_tokens for r in cached) == c1.forward_tokens
