"""Builds resume where they stopped: finished prompts are skipped, the output has no duplicates and equals an
uninterrupted build, a crash between writes is repaired, and a build with other settings refuses to mix in."""

from __future__ import annotations

import json

import pytest

from alignkit.data.build import RewardBuilder, SamplingSettings, items_from_prompts, run_build
from alignkit.data.build.runner import progress_path
from alignkit.data.io import read_records
from alignkit.data.records import PromptExample
from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import ConfigError
from alignkit.rewards.base import FunctionReward


class SeededSampler:
    """Text depends on prompt, sample index and call seed only; records which prompts were sampled."""

    def __init__(self) -> None:
        self.compute, self.sampled = Compute(), []

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        self.sampled.extend(prompts)
        return [[Sample(f"{p} " + "w " * ((seed + j * 7 + len(p)) % 5), [], 0.0, "stop") for j in range(n)]
                for p in prompts]


WORDS = FunctionReward(lambda prompts, completions: [float(len(c.split())) for c in completions], name="words")
PROMPTS = [PromptExample(f"prompt number {i}", metadata={"id": f"p{i}"}) for i in range(7)]


def _builder(sampler, n: int = 3) -> RewardBuilder:
    return RewardBuilder(sampler, WORDS, SamplingSettings(n=n), fmt="listwise", policy_name="fake")


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_interrupted_build_resumes_without_duplicates_and_matches_a_straight_run(tmp_path):
    straight = tmp_path / "straight.jsonl"
    run_build(_builder(SeededSampler()), items_from_prompts(PROMPTS), straight, batch_size=2, progress=False)

    out = tmp_path / "resumed.jsonl"
    first = SeededSampler()
    r1 = run_build(_builder(first), items_from_prompts(PROMPTS), out, batch_size=2, progress=False, limit=3)
    assert r1.processed == 3 and len(first.sampled) == 4  # the batch holding prompt 3 ran whole
    second = SeededSampler()
    r2 = run_build(_builder(second), items_from_prompts(PROMPTS), out, batch_size=2, progress=False)
    assert (r2.resumed, r2.processed) == (3, 4)
    # finished batches are not sampled again; the partly finished batch (prompts 2, 3) is rebuilt whole so its
    # seeds match the straight run, and prompt 2's duplicate outcome is discarded
    assert second.sampled == [p.prompt for p in PROMPTS[2:]]
    assert r2.extra["finished_items_recomputed"] == 1
    third = SeededSampler()
    r3 = run_build(_builder(third), items_from_prompts(PROMPTS), out, batch_size=2, progress=False)
    assert (r3.resumed, r3.processed, r3.records_written, third.sampled) == (7, 0, 0, [])

    keys = [r["metadata"]["prompt_key"] for r in _rows(out)]
    assert len(keys) == len(set(keys)) == r2.records_total
    assert sorted(map(json.dumps, _rows(out))) == sorted(map(json.dumps, _rows(straight)))
    assert len(read_records(out, kind="listwise").records) == len(keys)


def test_items_without_records_are_remembered_as_done(tmp_path):
    flat = FunctionReward(lambda prompts, completions: [1.0] * len(completions), name="flat")
    out = tmp_path / "o.jsonl"
    builder = RewardBuilder(SeededSampler(), flat, SamplingSettings(n=2))
    r1 = run_build(builder, items_from_prompts(PROMPTS[:3]), out, progress=False)
    assert r1.dropped == {"all_tied": 3} and r1.records_written == 0
    sampler = SeededSampler()
    r2 = run_build(RewardBuilder(sampler, flat, SamplingSettings(n=2)), items_from_prompts(PROMPTS[:3]), out,
                   progress=False)
    assert r2.resumed == 3 and sampler.sampled == []


def test_crash_between_writes_is_repaired(tmp_path):
    out = tmp_path / "o.jsonl"
    run_build(_builder(SeededSampler()), items_from_prompts(PROMPTS), out, progress=False, limit=2)
    good = _rows(out)
    orphan = dict(good[0], metadata={**good[0]["metadata"], "prompt_key": "id:p2"})  # p2 not in the progress log
    with out.open("a") as f:
        f.write(json.dumps(orphan) + "\n" + '{"prompt": "trunc')  # and a half-written line
    report = run_build(_builder(SeededSampler()), items_from_prompts(PROMPTS), out, progress=False)
    assert report.repaired == {"orphan_records": 1, "partial_output_lines": 1}
    keys = [r["metadata"]["prompt_key"] for r in _rows(out)]
    assert sorted(keys) == sorted(f"id:p{i}" for i in range(7))


def test_other_settings_or_foreign_file_refuse_to_mix(tmp_path):
    out = tmp_path / "o.jsonl"
    run_build(_builder(SeededSampler()), items_from_prompts(PROMPTS), out, progress=False, limit=1)
    with pytest.raises(ConfigError, match="different settings.*sampling"):
        run_build(_builder(SeededSampler(), n=4), items_from_prompts(PROMPTS), out, progress=False)
    report = run_build(_builder(SeededSampler(), n=4), items_from_prompts(PROMPTS), out, progress=False,
                       overwrite=True)
    assert report.resumed == 0 and report.processed == 7

    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"prompt": "x", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(ConfigError, match="no progress file"):
        run_build(_builder(SeededSampler()), items_from_prompts(PROMPTS), foreign, progress=False)
    assert not progress_path(foreign).exists()


def test_duplicate_input_prompts_are_counted_once(tmp_path):
    items = items_from_prompts(PROMPTS[:2] + PROMPTS[:1])
    report = run_build(_builder(SeededSampler()), items, tmp_path / "o.jsonl", progress=False)
    assert report.processed == 2 and report.skipped["duplicate_input_items"] == 1
    assert "duplicate_input_items=1" in report.summary()
