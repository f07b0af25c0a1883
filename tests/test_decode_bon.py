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
from alignkit.decode.sampler import Compute, Sample
from alignkit.decode.toy import EOS, ToySampler, fixed_dist
from alignkit.errors import ConfigError
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


class ScriptedSampler:
    """Returns hand-built candidates per prompt (token ids: one id per distinct word), so every selection rule has
    a known answer."""

    def __init__(self, candidates: dict[str, list[str]]) -> None:
        self.candidates, self.compute = candidates, Compute()
        words = sorted({w for c in candidates.values() for t in c for w in t.split()})
        self.ids = {w: i for i, w in enumerate(words)}

    def sample(self, prompts, n=1, **_):
        out = []
        for p in prompts:
            assert len(self.candidates[p]) == n
            out.append([Sample(t, [self.ids[w] for w in t.split()], 0.0, "eos", [], 1) for t in self.candidates[p]])
        return out


# p1: last numbers 4, 5, 5, 4, none. Counts tie 2-2 (MV: first occurrence, "4"); softmax weights (β=1) give
# "4": e^0 + e^0.1 = 2.105 and "5": e^2 + e^0 = 8.389 (WMV: "5"); the top reward 3.0 is the answerless one (BoN).
# p2: rewards 1, 2, 2: BoN takes the first of the tied best, index 1.
CANDIDATES = {"p1": ["The answer is 4", "so 5", "maybe 5.", "it is 4", "no idea"], "p2": ["x", "y", "z"]}
REWARDS = {"p1": [0.0, 2.0, 0.0, 0.1, 3.0], "p2": [1.0, 2.0, 2.0]}


def scripted_reward(seen: list):
    def reward(prompts, completions, **context):
        seen.extend(zip(prompts, completions, strict=True))
        return RewardResult([REWARDS[p][CANDIDATES[p].index(c)] for p, c in zip(prompts, completions, strict=True)])
    return reward


@pytest.mark.parametrize(("select_by", "kwargs", "expected"), [
    ("reward", {}, {"p1": "no idea", "p2": "y"}),
    ("vote", {"extractor": "last_number"}, {"p1": "The answer is 4", "p2": "x"}),
    ("weighted_vote", {"extractor": "last_number"}, {"p1": "so 5", "p2": "y"}),
    ("weighted_vote", {"extractor": "last_number", "weight": "raw"}, {"p1": "so 5", "p2": "y"}),
])
def test_selection_rules_on_hand_built_candidates(select_by, kwargs, expected) -> None:
    seen: list = []
    res = [best_of_n(ScriptedSampler({p: CANDIDATES[p]}), scripted_reward(seen), [p], n=len(CANDIDATES[p]),
                     select_by=select_by, **kwargs)[0] for p in ("p1", "p2")]
    assert {r.prompt: r.completion for r in res} == expected
    if select_by != "vote":  # every candidate scored once, with its own prompt
        assert sorted(seen) == sorted((p, c) for p in ("p1", "p2") for c in CANDIDATES[p])
    for r in res:
        assert r.info["index"] == CANDIDATES[r.prompt].index(r.completion)
        assert r.candidates == CANDIDATES[r.prompt] and r.scores == REWARDS[r.prompt]


def test_two_prompts_in_one_call_keep_their_own_candidates_and_scores() -> None:
    # p2's candidates score 0 except "w" (5.0): a slicing error between prompts would mix p1's scores in.
    table = {**dict(zip(CANDIDATES["p1"], REWARDS["p1"], strict=True)), "w": 5.0}
    sampler = ScriptedSampler({"p1": CANDIDATES["p1"], "p2": ["x", "y", "z", "w", "v"]})
    res = best_of_n(sampler, lambda p, c, **k: RewardResult([table.get(x, 0.0) for x in c]), ["p1", "p2"], n=5)
    assert [r.completion for r in res] == ["no idea", "w"]
    assert res[1].scores == [0.0, 0.0, 0.0, 5.0, 0.0] and res[1].info["mean_reward"] == pytest.approx(1.0)
    assert [r.compute.reward_calls for r in res] == [5, 5]
    assert [r.compute.generated_tokens for r in res] == [4 + 2 + 2 + 3 + 2, 5]  # words per candidate, summed


# MBR (U = ROUGE-1 F1 on the candidates' token ids): "a b" and its copy agree most with the others
# (gain (1 + .5 + 1 + 0) / 4), "x y" is isolated (1/4). WMBR weights each pseudo-reference j by its reward s_j:
# with s = (.5, .5, .5, 1) "a b" still wins (1.25/4 vs 1/4); with s = (.1, .1, .1, 1) "x y" does (.25/4 < 1/4).
MBR_CANDIDATES = ["a b", "a c", "a b", "x y"]


@pytest.mark.parametrize(("select_by", "rewards", "expected"), [
    ("mbr", None, 0), ("wmbr", [0.5, 0.5, 0.5, 1.0], 0), ("wmbr", [0.1, 0.1, 0.1, 1.0], 3),
    ("reward", [0.5, 0.5, 0.5, 1.0], 3)])
def test_mbr_and_wmbr_on_hand_built_candidates(select_by, rewards, expected) -> None:
    def reward(p, c, **k):
        return RewardResult([rewards[MBR_CANDIDATES.index(x)] for x in c])

    res = best_of_n(ScriptedSampler({"q": MBR_CANDIDATES}), reward if rewards else None, ["q"], n=4,
                    select_by=select_by)[0]
    assert res.info["index"] == expected and res.completion == MBR_CANDIDATES[expected]
    assert res.compute.reward_calls == (4 if rewards else 0)


def test_mbr_uses_token_ids_not_whitespace_words() -> None:
    # Texts "a b" / "ab" / "a b" split into different words, but their token ids say 0 and 1 are the same
    # sequence: ROUGE-1 on ids (as QAlign) makes 0 and 1 agree, so the first of them wins over 2.
    class Ids(ScriptedSampler):
        def sample(self, prompts, n=1, **_):
            return [[Sample("a b", [1, 2], 0.0, "eos"), Sample("ab", [1, 2], 0.0, "eos"),
                     Sample("a b x", [3, 4, 5], 0.0, "eos")]]

    # On whitespace words, "a b x" (gains (0.8 + 0 + 1) / 3 = .6) would beat "ab" ((0 + 1 + 0) / 3); on ids
    # "a b" and "ab" share gain 2/3 and "a b x" has 1/3. So the ids path picks 0 first; put "a b x" first to see it
    # lose.
    class IdsLast(ScriptedSampler):
        def sample(self, prompts, n=1, **_):
            return [[Sample("a b x", [3, 4, 5], 0.0, "eos"), Sample("a b", [1, 2], 0.0, "eos"),
                     Sample("ab", [1, 2], 0.0, "eos")]]

    assert best_of_n(Ids({}), None, ["q"], n=3, select_by="mbr")[0].info["index"] == 0
    assert best_of_n(IdsLast({}), None, ["q"], n=3, select_by="mbr")[0].info["index"] == 1
    words = best_of_n(IdsLast({}), None, ["q"], n=3, select_by="mbr", utility="token_f1")[0]
    assert words.info["index"] == 0  # the whitespace-word utility does see "a b x" and "a b" agree


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
