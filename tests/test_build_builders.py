"""Each builder writes valid records (read back with `alignkit.data.io`) with provenance; exact behaviour is
checked with scripted samplers, integration with `HFSampler` on the tiny random model."""

from __future__ import annotations

import re

import pytest

from alignkit.data.build import (
    JudgeBuilder,
    RewardBuilder,
    SamplingSettings,
    VerifierBuilder,
    build_reference,
    items_from_prompts,
    load_prompts,
    parse_ranking,
    records_from_scores,
    run_build,
    select_prompts,
)
from alignkit.data.build.common import BuildItem, ScoredList
from alignkit.data.build.judge import RankingParseError
from alignkit.data.io import read_records
from alignkit.data.records import ListwiseExample, PairwiseExample, PromptExample
from alignkit.data.suite import load_suite
from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import ConfigError
from alignkit.rewards.base import FunctionReward


class FnSampler:
    """Samples from a function of (prompt text, sample index, seed)."""

    def __init__(self, fn) -> None:
        self.fn, self.compute, self.calls = fn, Compute(), 0

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        self.calls += 1
        return [[Sample(self.fn(p if isinstance(p, str) else p[-1]["content"], j, seed), [], 0.0, "stop")
                 for j in range(n)] for p in prompts]


@pytest.fixture(scope="module")
def tiny_sampler():
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tokenizer = load_model("tiny-random")
    return HFSampler(model, tokenizer)


LENGTH = FunctionReward(lambda prompts, completions: [float(len(c.split())) for c in completions], name="words")


# ---------------------------------------------------------------- shared record-making


def test_records_from_scores_pairs_lists_and_ties():
    item = BuildItem("k", "p", {})
    recs, skips = records_from_scores(ScoredList(item, ["a", "b", "c"], [1.0, 0.0, 1.0]), "pairwise", {"x": 1})
    assert [(r.chosen, r.rejected, r.margin) for r in recs] == [("a", "b", 1.0)] and skips == {}
    recs, skips = records_from_scores(ScoredList(item, ["a", "b", "c"], [1.0, 0.0, 1.0]), "pairwise", {},
                                      pair_mode="all")
    assert sorted((r.chosen, r.rejected) for r in recs) == [("a", "b"), ("c", "b")] and skips == {"tied_pairs": 1}
    recs, skips = records_from_scores(ScoredList(item, ["a", "b"], [0.5, 0.5]), "pairwise", {})
    assert recs == [] and skips == {"tied_pairs": 1}
    recs, skips = records_from_scores(ScoredList(item, ["a", "b"], [0.5, 0.5]), "listwise", {})
    assert recs == [] and skips == {"all_tied": 1}
    with pytest.raises(ConfigError, match="format"):
        records_from_scores(ScoredList(item, ["a"], [1.0]), "triplets", {})


# ---------------------------------------------------------------- verifier (ACT)


def test_verifier_ranks_by_constraint_satisfaction_rate(tmp_path):
    prompt = PromptExample(
        "Write about cats.", constraints=[{"id": "punctuation:no_comma", "kwargs": {}},
                                          {"id": "keywords:existence", "kwargs": {"keywords": ["cat"]}}],
        metadata={"id": "p1"})
    answers = ["dogs, birds", "a cat, a dog", "a cat and a dog", "dogs and birds"]  # CSR 0, .5, 1, .5
    policy = FnSampler(lambda p, j, s: answers[j])
    out = tmp_path / "act.jsonl"
    report = run_build(VerifierBuilder(policy, sampling=SamplingSettings(n=4), policy_name="fake"),
                       items_from_prompts([prompt, PromptExample("No constraints here.")]), out, progress=False)
    (pair,) = read_records(out, kind="pairwise").records
    assert (pair.chosen, pair.rejected, pair.margin) == ("a cat and a dog", "dogs, birds", 1.0)
    meta = pair.metadata
    assert (meta["builder"], meta["reward"], meta["policy"], meta["prompt_id"]) == ("verifier", "csr", "fake", "p1")
    assert meta["sampling"]["n"] == 4 and meta["constraints"] == prompt.constraints
    assert report.dropped == {"no_constraints": 1}

    lists = tmp_path / "act_lists.jsonl"
    run_build(VerifierBuilder(policy, sampling=SamplingSettings(n=4), fmt="listwise"), items_from_prompts([prompt]),
              lists, progress=False)
    (lst,) = read_records(lists, kind="listwise").records
    assert lst.scores == [0.0, 0.5, 1.0, 0.5] and lst.completions == answers


def test_verifier_on_tiny_model_and_suite(tmp_path, tiny_sampler):
    out = tmp_path / "act.jsonl"
    items = items_from_prompts(load_suite("train")[:3])
    report = run_build(VerifierBuilder(tiny_sampler, sampling=SamplingSettings(n=3, max_new_tokens=8),
                                       fmt="listwise", policy_name="tiny-random"), items, out, progress=False)
    assert report.processed == 3
    assert report.records_written + sum(report.dropped.values()) == 3
    lists = read_records(out, kind="listwise", allow_empty=True).records  # every prompt may be dropped
    assert len(lists) == report.records_written
    for rec in lists:
        assert isinstance(rec, ListwiseExample) and len(rec.completions) == 3
        assert all(0.0 <= s <= 1.0 for s in rec.scores)
        assert rec.metadata["policy"] == "tiny-random" and rec.metadata["prompt_id"].startswith("train-")


# ---------------------------------------------------------------- reward


def test_reward_builder_margins_with_tiny_model(tmp_path, tiny_sampler):
    out = tmp_path / "pairs.jsonl"
    prompts = [PromptExample("Say something about rain."), PromptExample("Describe a cup.")]
    report = run_build(RewardBuilder(tiny_sampler, LENGTH, SamplingSettings(n=3, max_new_tokens=12), pair_mode="all",
                                     policy_name="tiny-random"), items_from_prompts(prompts), out, progress=False)
    pairs = read_records(out, kind="pairwise").records
    assert pairs and report.records_written == len(pairs)
    for p in pairs:
        assert isinstance(p, PairwiseExample)
        assert p.margin == pytest.approx(len(p.chosen.split()) - len(p.rejected.split())) and p.margin > 0
        assert p.metadata["reward"] == "words" and p.metadata["sampling"]["max_new_tokens"] == 12
        assert p.metadata["prompt_key"].startswith("sha:")


def test_reward_builder_passes_constraints_and_references_as_context(tmp_path):
    seen = {}

    def reward(prompts, completions, constraints=None, references=None):
        seen["constraints"], seen["references"] = constraints, references
        return [float(i) for i in range(len(completions))]

    prompt = PromptExample("q", references=["r"], constraints=[{"id": "punctuation:no_comma", "kwargs": {}}])
    run_build(RewardBuilder(FnSampler(lambda p, j, s: f"a{j}"), FunctionReward(reward, name="ctx"),
                            SamplingSettings(n=2)), items_from_prompts([prompt]), tmp_path / "o.jsonl",
              progress=False)
    assert seen["references"] == [["r"], ["r"]] and len(seen["constraints"]) == 2


# ---------------------------------------------------------------- reference (BLEUBERI)


def test_select_prompts_modes():
    rows = [{"id": i, "scores": [s, s]} for i, s in enumerate([0.5, 0.1, 0.9, 0.3])]
    ids = lambda rs: [r["id"] for r in rs]  # noqa: E731
    assert ids(select_prompts(rows, "hard", fraction=0.5)) == [1, 3]
    assert ids(select_prompts(rows, "easy", num=1)) == [2]
    assert ids(select_prompts(rows, "hard", threshold=0.3)) == [1, 3]
    assert ids(select_prompts(rows, "easy", threshold=0.5)) == [2, 0]
    picked = ids(select_prompts(rows, "random", num=2, seed=1))
    assert len(set(picked)) == 2 and picked == ids(select_prompts(rows, "random", num=2, seed=1))  # seeded
    assert len(select_prompts(rows, "all")) == 4
    with pytest.raises(ConfigError, match="at most one"):
        select_prompts(rows, "hard", fraction=0.5, num=1)


def test_reference_builder_keeps_hard_prompts(tmp_path):
    ref_easy = "the cat sat on the mat today"
    prompts = [PromptExample("easy one", references=[ref_easy], metadata={"id": "easy"}),
               PromptExample("hard one", references=["quantum chromodynamics of gluons"], metadata={"id": "hard"}),
               PromptExample("no refs", metadata={"id": "none"})]
    # easy: samples close to the reference; hard: unrelated text
    policy = FnSampler(lambda p, j, s: ref_easy if p == "easy one" and j == 0 else
                       "the cat sat on a mat" if p == "easy one" else ["bananas are yellow", "sky"][j % 2])
    out = tmp_path / "hard.jsonl"
    report = build_reference(policy, items_from_prompts(prompts), out, sampling=SamplingSettings(n=2),
                             select="hard", fraction=0.5, progress=False, policy_name="fake")
    pairs = read_records(out, kind="pairwise").records
    assert [p.metadata["prompt_id"] for p in pairs] == ["hard"]
    assert pairs[0].metadata["selection"]["mode"] == "hard" and pairs[0].metadata["reward"] == "bleu"
    assert report.dropped == {"no_references": 1}
    assert report.skipped["not_selected"] == 1 and report.extra["prompts_scored"] == 2
    scored = read_records(tmp_path / "hard.scored.jsonl", kind="listwise").records
    assert {r.metadata["prompt_id"] for r in scored} == {"easy", "hard"}

    easy = tmp_path / "easy.jsonl"
    build_reference(policy, items_from_prompts(prompts), easy, sampling=SamplingSettings(n=2), select="easy",
                    num=1, fmt="listwise", progress=False)
    (lst,) = read_records(easy, kind="listwise").records
    assert lst.metadata["prompt_id"] == "easy" and lst.scores[0] == pytest.approx(1.0)


def test_reference_builder_on_tiny_model(tmp_path, tiny_sampler):
    prompts = [PromptExample("Name a fruit.", references=["An apple is a fruit."]),
               PromptExample("Name a colour.", references=["Blue is a colour."])]
    out = tmp_path / "ref.jsonl"
    report = build_reference(tiny_sampler, items_from_prompts(prompts), out, fmt="listwise", select="all",
                             sampling=SamplingSettings(n=2, max_new_tokens=8), progress=False)
    assert report.extra["prompts_scored"] == 2
    for rec in read_records(out, kind="listwise").records:
        assert all(0.0 <= s <= 1.0 for s in rec.scores)


# ---------------------------------------------------------------- judge


@pytest.mark.parametrize(("text", "k", "expected"), [
    ("Ranking: 2 > 1 > 3", 3, [1, 0, 2]),
    ("I prefer [3] > [1] > [2].", 3, [2, 0, 1]),
    ("2, 3, 1", 3, [1, 2, 0]),
    ("Ranking: 3 > 1", 3, [2, 0, 1]),  # K-1 ranked: the missing one is last
    ("1. Response 3 is good\nFinal ranking: 3 > 2 > 1", 3, [2, 1, 0]),
    ("Response 2", 2, [1, 0]),
])
def test_parse_ranking_accepts(text, k, expected):
    assert parse_ranking(text, k) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("I cannot decide.", "no_ranking"), ("Ranking: 4 > 1 > 2", "out_of_range"),
    ("Ranking: 1 > 1 > 2", "duplicate"), ("Ranking: 2", "incomplete"),
])
def test_parse_ranking_rejects_with_reason(text, reason):
    with pytest.raises(RankingParseError) as e:
        parse_ranking(text, 3)
    assert e.value.reason == reason


def _good_first_judge(bad: dict[str, list[str]]):
    """A judge that ranks the response containing GOOD first, BAD last; for requests listed in `bad` it first
    answers with the scripted malformed outputs."""
    attempts: dict[str, int] = {}

    def fn(judge_prompt: str, j: int, seed) -> str:
        request = judge_prompt.split("[Request]\n", 1)[1].split("\n", 1)[0]
        n = attempts.get(request, 0)
        attempts[request] = n + 1
        if n < len(bad.get(request, [])):
            return bad[request][n]
        blocks = re.findall(r"\[Response (\d+)\]\n(.*?)\n\[End of Response", judge_prompt, flags=re.S)
        order = sorted(blocks, key=lambda b: (0 if "GOOD" in b[1] else 2 if "BAD" in b[1] else 1))
        return "Ranking: " + " > ".join(num for num, _ in order)

    return FnSampler(fn)


def test_judge_builder_maps_shuffled_positions_back_and_retries(tmp_path):
    policy = FnSampler(lambda p, j, s: ["meh answer", "GOOD answer", "BAD answer"][j])
    judge = _good_first_judge({"q2": ["no idea"], "q3": ["?", "Ranking: 9 > 9", "nothing"]})
    prompts = [PromptExample(q, metadata={"id": q}) for q in ("q1", "q2", "q3")]
    out = tmp_path / "judged.jsonl"
    report = run_build(JudgeBuilder(policy, judge, SamplingSettings(n=3), max_retries=2, policy_name="fake",
                                    judge_name="fake-judge"), items_from_prompts(prompts), out, progress=False)
    pairs = read_records(out, kind="pairwise").records
    assert [p.metadata["prompt_id"] for p in pairs] == ["q1", "q2"]
    for p in pairs:
        assert (p.chosen, p.rejected, p.margin) == ("GOOD answer", "BAD answer", None)
        assert p.metadata["ranking"] == [1, 0, 2] and p.metadata["judge"] == "fake-judge"
    assert pairs[1].metadata["judge_attempts"] == 2
    assert report.dropped == {"judge_unparseable": 1}
    assert report.skipped["judge_retries"] == 1 + 2
    assert report.skipped["judge_parse_failures:no_ranking"] == 3
    assert report.skipped["judge_parse_failures:out_of_range"] == 1

    lists = tmp_path / "judged_lists.jsonl"
    run_build(JudgeBuilder(policy, _good_first_judge({}), SamplingSettings(n=3), fmt="listwise"),
              items_from_prompts(prompts[:1]), lists, progress=False)
    (lst,) = read_records(lists, kind="listwise").records
    assert lst.scores == [2.0, 3.0, 1.0]


def test_judge_builder_on_tiny_model_counts_unparseable(tmp_path, tiny_sampler):
    out = tmp_path / "judged.jsonl"
    report = run_build(JudgeBuilder(tiny_sampler, tiny_sampler, SamplingSettings(n=2, max_new_tokens=6),
                                    judge_max_new_tokens=6, max_retries=1),
                       items_from_prompts(load_suite("test")[:2]), out, progress=False)
    # a random model rarely writes a ranking; every prompt is either recorded or dropped with a reason
    assert report.records_written + sum(report.dropped.values()) == 2
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    assert len(lines) == report.records_written
    if lines:
        assert len(read_records(out, kind="pairwise").records) == len(lines)


# ---------------------------------------------------------------- prompt sources


def test_load_prompts_from_suite_and_ifeval_layout(tmp_path):
    import json

    assert len(load_prompts("suite:test-v1")) == 128
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"key": 7, "prompt": "Hi", "instruction_id_list": ["punctuation:no_comma"],
                             "kwargs": [{"unused": None}]}) + "\n"
                 + json.dumps({"id": "x", "prompt": "Yo", "references": ["ref"]}) + "\n")
    a, b = load_prompts(str(f))
    assert a.constraints == [{"id": "punctuation:no_comma", "kwargs": {}}] and a.metadata["id"] == 7
    assert b.references == ["ref"] and items_from_prompts([b])[0].key == "id:x"


def test_empty_and_identical_samples_are_left_out_and_counted(tmp_path):
    policy = FnSampler(lambda p, j, s: ["", "same", "same", "other words here"][j])
    out = tmp_path / "o.jsonl"
    report = run_build(RewardBuilder(policy, LENGTH, SamplingSettings(n=4), pair_mode="all"),
                       items_from_prompts(["q"]), out, progress=False)
    pairs = read_records(out, kind="pairwise").records
    assert sorted((p.chosen, p.rejected) for p in pairs) == [("other words here", "same")] * 2
    assert [p.metadata["rejected_index"] for p in pairs] == [1, 2]
    assert report.skipped["empty_completions"] == 1 and report.skipped["tied_pairs"] == 1

    only_empty = FnSampler(lambda p, j, s: ["", "x"][j])
    report = run_build(RewardBuilder(only_empty, LENGTH, SamplingSettings(n=2)), items_from_prompts(["q"]),
                       tmp_path / "e.jsonl", progress=False)
    assert report.dropped == {"too_few_completions": 1}
