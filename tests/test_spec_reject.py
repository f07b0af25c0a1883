"""Speculative rejection (Sun et al. 2024; issue 18 item 4): early rejection at token checkpoints on a toy
whose outputs and rewards are known, and the compute it saves against best-of-n."""

from __future__ import annotations

import pytest

from alignkit.decode.bon import best_of_n
from alignkit.decode.spec_reject import spec_reject
from alignkit.decode.strategies import run_strategy
from alignkit.decode.toy import EOS, ToySampler, fixed_dist
from alignkit.errors import ConfigError


def count_a(prompts, completions, **context):  # noqa: ANN001, ANN003, ANN201
    return [float(c.count("a")) for c in completions]


def toy() -> ToySampler:
    return ToySampler(["a", "b", EOS], fixed_dist({"a": 0.3, "b": 0.65, EOS: 0.05}))


def test_rejection_schedule_and_compute() -> None:
    s = toy()
    res = spec_reject(s, count_a, ["x", "y"], n=16, checkpoints=(4, 8), keep=0.25, max_new_tokens=16, seed=0)
    for r in res:
        # 16 rows; at 4 tokens the best ceil(0.25 * alive) continue, again at 8; rows ending early (EOS) stay
        alive = r.info["alive"]
        assert alive[0] <= 4 and alive[1] <= 1 and r.info["rejected"] >= 16 - 4 - 16 * 0.5
        assert len(r.candidates) == len(r.scores) == 16 - r.info["rejected"]
        assert r.completion == r.candidates[max(range(len(r.scores)), key=lambda k: (r.scores[k], -k))]
        assert r.info["selected_reward"] == max(r.scores)
        # reward calls: one per partial score at each checkpoint, one per complete candidate
        assert r.compute.reward_calls >= len(r.candidates) + alive[0]
        # at most 16 x 4 tokens, then 4 rows x 4, then 1 row x 8: far below best-of-16's 16 x 16
        assert r.compute.generated_tokens <= 16 * 4 + 4 * 4 + 8
    assert s.compute.forward_tokens == sum(r.compute.forward_tokens for r in res)
    assert s.compute.generated_tokens == sum(r.compute.generated_tokens for r in res)


def test_partial_scores_pick_better_rows_than_random_at_equal_tokens() -> None:
    prompts = ["p"] * 40
    sr = spec_reject(toy(), count_a, prompts, n=16, checkpoints=(4,), keep=0.125, max_new_tokens=12, seed=1)
    gen = sum(r.compute.generated_tokens for r in sr) / len(prompts)
    # best-of-n at the same generated tokens: n = gen / 12 full samples
    n_equal = max(1, int(gen // 12))
    bon = best_of_n(toy(), count_a, prompts, n=n_equal, max_new_tokens=12, seed=1)
    mean = lambda rs, key: sum(key(r) for r in rs) / len(rs)  # noqa: E731
    assert mean(sr, lambda r: r.info["selected_reward"]) > mean(bon, lambda r: r.info["selected_reward"]) + 0.3


def test_keep_one_is_best_of_n_and_registry_runs_it() -> None:
    a = spec_reject(toy(), count_a, ["x"], n=8, checkpoints=(3,), keep=1.0, max_new_tokens=6, seed=2)
    assert a[0].info["rejected"] == 0 and len(a[0].candidates) == 8
    b = run_strategy("spec_reject", toy(), ["x"], reward=count_a, n=4, checkpoints=[2], max_new_tokens=5, seed=0)
    assert b[0].info["strategy"] == "spec_reject"
    with pytest.raises(ConfigError, match="reward"):
        run_strategy("spec_reject", toy(), ["x"], n=4)


@pytest.mark.parametrize("kwargs", [{"keep": 0}, {"keep": 1.5}, {"checkpoints": (8, 4)}, {"checkpoints": (0,)},
                                    {"n": 0}])
def test_bad_settings(kwargs) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError):
        spec_reject(toy(), count_a, ["x"], **kwargs)


def test_on_a_cached_hf_sampler_continuations_reencode_nothing() -> None:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tok = load_model("tiny-random")
    reward = lambda p, c, **k: [float(x.count("e")) for x in c]  # noqa: E731
    runs = []
    for mb in (0, 64):
        s = HFSampler(model, tok, prefix_cache_mb=mb)
        res = spec_reject(s, reward, ["Hi", "What is 2 + 2?"], n=8, checkpoints=(4, 8), keep=0.25,
                          max_new_tokens=12, seed=3)
        runs.append((res, s.compute.copy()))
    (plain, c0), (cached, c1) = runs
    assert [r.candidates for r in plain] == [r.candidates for r in cached]
    assert c1.forward_tokens + c1.cached_tokens == c0.forward_tokens + c0.cached_tokens  # same contexts
    # with the cache every generated token is processed once, plus each prompt once (no EOS in 12 random tokens)
    a, b = (s.encode_prompt(p) for p in ["Hi", "What is 2 + 2?"])
    common = next(j for j in range(min(len(a), len(b))) if a[j] != b[j])  # the system turn, encoded once for both
    assert c1.forward_tokens == len(a) + len(b) - common + c1.generated_tokens - 2 * 8


def test_a_separate_partial_reward_ranks_the_unfinished_rows_and_the_final_reward_picks() -> None:
    seen: list[list[str]] = []

    def count_b(prompts, completions, **context):  # noqa: ANN001, ANN003, ANN202
        seen.append(list(completions))
        return [float(c.count("b")) for c in completions]

    res = spec_reject(toy(), count_a, ["x"], n=16, checkpoints=(4,), keep=0.125, max_new_tokens=10, seed=4,
                      partial_reward=count_b)
    (partial,) = seen  # one checkpoint: the ranker sees the partial texts only, never a complete candidate
    r = res[0]
    assert r.info["partial_reward"] == "count_b" and r.info["alive"] == [2]
    # the two survivors are the partial texts with the most b's (ties: the earlier row)
    order = sorted(range(len(partial)), key=lambda k: (-partial[k].count("b"), k))
    kept = {partial[k] for k in order[:2]}
    long = [c for c in r.candidates if len(c) > 4]
    assert long and all(c[:4] in kept for c in long)
    # and the answer is chosen by the final reward (count_a), not by the ranker
    assert r.scores == [float(c.count("a")) for c in r.candidates]
    assert r.info["selected_reward"] == max(r.scores)
    # without it, the final reward ranks the partial texts too
    assert spec_reject(toy(), count_a, ["x"], n=4, checkpoints=(2,), max_new_tokens=4, seed=0)[0].info[
        "partial_reward"] == "count_a"
