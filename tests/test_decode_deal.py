"""DeAL (spec A3): lookahead search beats plain sampling on a keyword constraint; search mechanics on a toy."""

from __future__ import annotations

import math

import pytest

from alignkit.decode.deal import deal
from alignkit.decode.hf import HFSampler
from alignkit.decode.toy import EOS, ToySampler
from alignkit.errors import ConfigError
from alignkit.models import load_model


def keyword_reward(prompts, completions, keywords=None, **context):
    return [float(k in c) for c, k in zip(completions, keywords, strict=True)]


def test_deal_meets_keyword_constraint_more_often_than_sampling() -> None:
    model, tok = load_model("tiny-random")
    sampler = HFSampler(model, tok)
    prompts = ["Name a fruit.", "Say something nice.", "What is the weather like?", "Count to three."]
    # keyword: a word the model ranks 4th at the first step, i.e. reachable but rarely sampled
    keywords = []
    for p in prompts:
        top = sampler.next_token_topk([p], [""], k=20)[0]
        words = [t.text for t in top[3:] if t.text.strip().isalpha() and len(t.text.strip()) >= 3]
        keywords.append(words[0].strip())
    ctx = [{"keywords": k} for k in keywords]
    res = deal(sampler, keyword_reward, prompts, top_k=5, beam=2, lookahead=2, lam=1.0, max_new_tokens=6,
               contexts=ctx)
    deal_rate = sum(k in r.completion for k, r in zip(keywords, res, strict=True)) / len(prompts)
    plain = sampler.sample(prompts, n=8, max_new_tokens=6, seed=0)
    plain_rate = sum(k in s.text for k, row in zip(keywords, plain, strict=True) for s in row) / (8 * len(prompts))
    assert deal_rate == 1.0
    assert plain_rate < 0.5
    assert all(r.compute.reward_calls > 0 and r.compute.forward_tokens > 0 for r in res)


def _toy() -> ToySampler:
    # greedy path "a a a ..." never says "z"; "z" is the 2nd choice at the start; "b" leads to z via lookahead
    def dist(prompt, toks):
        if toks and toks[-1] == "b":
            return {"z": 0.9, EOS: 0.1}
        if toks and toks[-1] == "z":
            return {EOS: 1.0}
        return {"a": 0.6, "b": 0.3, EOS: 0.1}
    return ToySampler(["a", "b", "z", EOS], dist)


def test_lookahead_finds_keyword_behind_an_unlikely_token() -> None:
    toy = _toy()
    want_z = lambda p, c, **k: [float("z" in x) for x in c]  # noqa: E731
    blind = deal(toy, want_z, ["x"], top_k=2, beam=1, lookahead=0, lam=1.0, max_new_tokens=4)[0]
    seeing = deal(toy, want_z, ["x"], top_k=2, beam=1, lookahead=2, lam=1.0, max_new_tokens=4)[0]
    assert "z" not in blind.completion  # without lookahead "b" looks worse than "a"
    assert seeing.completion == "bz"
    assert seeing.info["logp"] == pytest.approx(math.log(0.3) + math.log(0.9))  # then EOS w.p. 1


def test_lambda_zero_is_likelihood_beam_search_and_validation() -> None:
    toy = _toy()
    zero = lambda p, c, **k: [0.0] * len(c)  # noqa: E731
    res = deal(toy, zero, ["x"], top_k=3, beam=3, lookahead=0, lam=0.0, max_new_tokens=3)[0]
    # the most likely complete output: b z EOS (0.3·0.9·1 = 0.27) beats EOS at once (0.1) and a a a (0.216, cut)
    assert res.completion == "bz"
    assert res.info["logp"] == pytest.approx(math.log(0.27))
    with pytest.raises(ConfigError):
        deal(toy, zero, ["x"], top_k=0)


def test_cached_sampler_gives_the_same_search_without_re_encoding_beams() -> None:
    model, tok = load_model("tiny-random")
    prompts = ["Name a fruit.", "Count to three."]
    ctx = [{"keywords": "an"}, {"keywords": "on"}]
    top_k, beam, look, new = 3, 2, 3, 6
    runs = []
    for mb in (0, 64):
        s = HFSampler(model, tok, prefix_cache_mb=mb)
        res = deal(s, keyword_reward, prompts, top_k=top_k, beam=beam, lookahead=look, max_new_tokens=new,
                   contexts=ctx)
        runs.append((res, s.compute.copy()))
    (plain, c0), (cached, c1) = runs
    assert [r.completion for r in plain] == [r.completion for r in cached]
    assert [r.candidates for r in plain] == [r.candidates for r in cached]
    for a, b in zip(plain, cached, strict=True):
        assert b.info["logp"] == pytest.approx(a.info["logp"], abs=1e-4)
    assert c1.forward_tokens + c1.cached_tokens == c0.forward_tokens + c0.cached_tokens  # same contexts
    prompt_tokens = sum(len(HFSampler(model, tok).encode_prompt(p)) for p in prompts)
    # per output token at most beam x top_k x (lookahead + 1) forward tokens, plus each prompt once
    assert c1.forward_tokens <= prompt_tokens + len(prompts) * new * beam * top_k * (look + 1)
    assert c0.forward_tokens > 3 * c1.forward_tokens
    assert sum(r.compute.forward_tokens for r in cached) == c1.forward_tokens
