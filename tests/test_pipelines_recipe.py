"""The iterated recipe (alignkit.pipelines): data selection by hand-made lists, and the whole pipeline on the tiny
model with a word-count verifier — every round samples from the policy the previous round trained, the final
evaluation carries the paired gain over the base, a rerun resumes, and a rerun with other settings is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alignkit.data.records import ListwiseExample
from alignkit.errors import ConfigError
from alignkit.pipelines.recipe import RecipeConfig, round_prompts, run_recipe
from alignkit.pipelines.selfdata import list_stats, select_pairs, select_rft


def _list(scores: list[float], reasons: list[str], texts: list[str] | None = None) -> ListwiseExample:
    texts = texts or [f"answer {i}" for i in range(len(scores))]
    return ListwiseExample(prompt="p", completions=texts, scores=scores, metadata={"finish_reasons": reasons})


def test_rft_keeps_passing_samples_that_ended_and_counts_the_rest() -> None:
    lists = [_list([1.0, 0.5, 1.0, 1.0], ["length", "eos", "eos", "stop"]),  # sample 0 passes but was cut off
             _list([0.5, 0.0], ["eos", "eos"])]
    sel = select_rft(lists, per_prompt=1)
    assert [r.completion for r in sel.records] == ["answer 2"]  # best passing sample that ended, in sample order
    assert sel.skipped == {"truncated_passing_samples": 1, "prompts_without_passing_sample": 1}
    two = select_rft(lists, per_prompt=2)
    assert [r.completion for r in two.records] == ["answer 2", "answer 3"]
    relaxed = select_rft(lists, per_prompt=1, require_eos=False)
    assert [r.completion for r in relaxed.records] == ["answer 0"]


def test_rft_never_keeps_the_same_text_twice() -> None:
    sel = select_rft([_list([1.0, 1.0], ["eos", "eos"], ["same", "same"])], per_prompt=2)
    assert [r.completion for r in sel.records] == ["same"]


def test_rft_drops_a_looping_demonstration_when_asked() -> None:
    loop = "please see the article below. " * 6  # distinct-2 within: 5 unique bigrams of 29 = 0.17
    fine = "The river bends twice before it reaches the old mill, where the water slows."
    lists = [_list([1.0, 1.0, 1.0], ["eos", "eos", "eos"], [loop, fine, "Yes."])]
    assert [r.completion for r in select_rft(lists, per_prompt=3).records] == [loop, fine, "Yes."]
    sel = select_rft(lists, per_prompt=3, min_distinct_2=0.9)
    assert [r.completion for r in sel.records] == [fine, "Yes."]  # a one-word answer cannot repeat: kept
    assert sel.skipped == {"repetitive_passing_samples": 1}
    with pytest.raises(ConfigError, match="min_distinct_2"):
        select_rft(lists, min_distinct_2=1.5)
    with pytest.raises(ConfigError, match="min_distinct_2"):  # before any sampling
        RecipeConfig(min_distinct_2=-0.1).validate()


def test_pairs_prefer_a_finished_best_and_a_truncated_worst() -> None:
    lst = _list([1.0, 1.0, 0.0, 0.0], ["length", "eos", "eos", "length"])
    (pair,) = select_pairs([lst]).records
    assert (pair.chosen, pair.rejected, pair.margin) == ("answer 1", "answer 3", 1.0)
    tied = select_pairs([_list([0.5, 0.5], ["eos", "eos"])])
    assert not tied.records and tied.skipped == {"tied": 1}
    unfinished = select_pairs([_list([1.0, 0.0], ["length", "length"])])
    assert unfinished.skipped == {"no_finished_sample": 1}


def test_list_stats_counts_samples_endings_and_prompts() -> None:
    stats = list_stats([_list([1.0, 0.0], ["eos", "length"]), _list([0.0, 0.0], ["length", "rejected"])])
    assert stats == {"samples": 4, "pass_rate": 0.25, "eos_rate": 0.25, "prompts_with_pass": 0.5,
                     "rejected_rate": 0.25}  # an early-rejected sample did not end by itself


def test_rounds_take_fresh_slices_of_the_train_prompts() -> None:
    cfg = RecipeConfig(n_train_prompts=3)
    prompts = list(range(7))
    assert round_prompts(cfg, prompts, 1) == [0, 1, 2]
    assert round_prompts(cfg, prompts, 2) == [3, 4, 5]
    assert round_prompts(cfg, prompts, 3) == [6, 0, 1]  # wraps when the split runs out


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecipeConfig, list[str], dict[str, Any]]:
    import alignkit.models as models

    root = tmp_path_factory.mktemp("recipe")
    prompts = root / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": f"Write about topic {i}.", "base_task": f"Write about topic {i}.",
             "constraints": [{"id": "length_constraints:number_words",
                              "kwargs": {"relation": "at least", "num_words": 5 + i % 3}}]} for i in range(8)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RecipeConfig(model="tiny-random", output_dir=str(root / "run"), train_prompts=str(prompts),
                       test_prompts=str(prompts), n_train_prompts=4, n_test_prompts=4, rounds=2,
                       method="rft+dpo", reward="csr", samples_per_prompt=4, max_new_tokens=8, min_score=1.0,
                       require_eos=False, lr=1e-2, epochs=1.0, batch_size=4, lora_r=4, gen_batch_size=8)
    loaded: list[str] = []
    real = models.load_model

    def spy(spec: str = models.EMBEDDED, **kw: Any) -> Any:
        loaded.append(spec)
        return real(spec, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(models, "load_model", spy)
    try:
        final = run_recipe(cfg, log=lambda _m: None)
    finally:
        mp.undo()
    return cfg, loaded, final


def test_each_round_samples_from_the_policy_the_previous_round_trained(recipe_run: Any) -> None:
    cfg, loaded, _ = recipe_run
    root = Path(cfg.output_dir)
    r1 = json.loads((root / "round1" / "data" / ".done").read_text())
    r2 = json.loads((root / "round2" / "data" / ".done").read_text())
    trained1 = json.loads((root / "round1" / "dpo" / ".done").read_text())["model"]
    assert r1["policy"] == "tiny-random"
    assert r2["policy"] == trained1 != "tiny-random"
    assert Path(trained1).is_relative_to(root / "round1")
    # The model actually loaded for round 2's sampling is round 1's, not the base.
    lists2 = [json.loads(line) for line in (root / "round2" / "data" / "lists.jsonl").read_text().splitlines()]
    assert {row["metadata"]["policy"] for row in lists2} == {trained1}
    assert trained1 in loaded
    # round 1's DPO starts from round 1's RFT model: the two methods chain inside a round
    rft1 = json.loads((root / "round1" / "rft" / ".done").read_text())["model"]
    assert rft1 != "tiny-random" and json.loads((root / "round1" / "rft" / ".done").read_text())["steps"] > 0
    dpo_cfg = (root / "round1" / "dpo" / "config.yaml").read_text()
    assert f"model: {rft1}" in dpo_cfg


def test_final_eval_has_the_paired_gain_guards_and_kl(recipe_run: Any) -> None:
    cfg, _, final = recipe_run
    paired = final["paired_vs_baseline"]["constraint_accuracy"]
    assert {"value", "low", "high", "n"} <= set(paired) and paired["n"] == 4
    assert paired["low"] <= paired["value"] <= paired["high"]
    guards = final["guards"]
    assert {"words", "distinct_1", "distinct_2", "ended_share", "task_overlap"} <= set(guards)
    assert "kl" in final
    summary = json.loads((Path(cfg.output_dir) / "summary.json").read_text())
    assert summary["final"]["paired_vs_baseline"] == final["paired_vs_baseline"]


def test_rerun_resumes_and_other_settings_are_refused(recipe_run: Any) -> None:
    cfg, _, final = recipe_run
    logs: list[str] = []
    again = run_recipe(cfg, log=logs.append)
    assert again["paired_vs_baseline"] == final["paired_vs_baseline"]
    assert all("skipping" in line for line in logs if line.startswith("["))
    other = RecipeConfig(**{**cfg.__dict__, "lr": 0.5})
    with pytest.raises(ConfigError, match="lr"):
        run_recipe(other, log=lambda _m: None)


def test_a_code_reward_in_a_recipe_file_needs_allow_code_rewards(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from alignkit.cli import main

    monkeypatch.delenv("ALIGNKIT_ALLOW_CODE_REWARDS", raising=False)
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef f(p, c, **k):\n    return [0.0]*len(c)\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: tiny-random\noutput_dir: {tmp_path / 'run'}\nreward: {tmp_path / 'evil.py'}:f\n")
    assert main(["recipe", "run", str(recipe)]) == 2
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_guard_warnings_flag_a_repetitive_far_moved_policy_and_pass_a_healthy_one() -> None:
    """The numbers of docs/efficacy.md: row #9 (data at temperature 0.7) repeated itself; row #7 did not."""
    from alignkit.evaluate.guards import guard_warnings

    base = {"guards": {"distinct_2": {"within": 0.968}, "empty_share": 0.0}}
    hollow = {"guards": {"distinct_2": {"within": 0.677}, "empty_share": 0.0}, "kl": {"value": 38.2}}
    healthy = {"guards": {"distinct_2": {"within": 0.974}, "empty_share": 0.0}, "kl": {"value": 9.8}}
    warnings = guard_warnings(hollow, base)
    assert len(warnings) == 2 and warnings[0].startswith("repetition: distinct-2 within answers fell from 0.97 to 0.68")
    assert "38.2 nats" in warnings[1]
    assert guard_warnings(healthy, base) == []
