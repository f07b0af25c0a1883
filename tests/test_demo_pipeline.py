"""The demo's pipeline end to end on the tiny model: every stage runs, writes its run directory, the report has
every section, and a rerun skips finished stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    prompts = root / "prompts.jsonl"
    # Word-count constraints near what 16 random tokens give, so the tiny model's samples differ in CSR and the
    # verifier builder has lists to rank.
    rows = [{"id": f"p{i}", "prompt": f"Write about topic {i}.",
             "constraints": [{"id": "length_constraints:number_words",
                              "kwargs": {"relation": "at least", "num_words": 10 + i % 4}}]} for i in range(8)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DemoConfig(model="tiny-random", output_dir=str(root / "run"), train_prompts=str(prompts),
                     test_prompts=str(prompts), n_train_prompts=8, n_test_prompts=4, n_samples=4,
                     max_new_tokens=16, epochs=1.0, gen_batch_size=8, qalign_steps=2, n_strategy_prompts=2,
                     require_eos=False, rounds=2)  # the random model seldom ends by EOS
    run_demo(cfg, log=lambda _m: None)
    return root / "run"


def test_every_stage_writes_a_run_directory(demo_dir: Path) -> None:
    for stage in ("base", "data-r1", "rft-r1", "data-r2", "rft-r2", "rft-eval", "bon", "qalign"):
        assert (demo_dir / stage / ".done").exists(), stage
    for stage in ("base", "rft-eval", "bon", "qalign"):
        headline = json.loads((demo_dir / stage / "eval.json").read_text())
        assert {"value", "low", "high"} <= set(headline["constraint_accuracy"])
    assert (demo_dir / "rft-r2" / "metrics.jsonl").read_text().strip()
    trained = json.loads((demo_dir / "rft-eval" / "eval.json").read_text())
    assert "kl" in trained and "constraint_accuracy" in trained["paired_vs_baseline"]
    # round 2 sampled from round 1's model
    assert json.loads((demo_dir / "data-r2" / ".done").read_text())["policy"] == \
        json.loads((demo_dir / "rft-r1" / ".done").read_text())["model"]


def test_strategies_run_on_the_first_test_prompts_paired_with_the_base(demo_dir: Path) -> None:
    base = [json.loads(line)["id"] for line in (demo_dir / "base" / "samples.jsonl").read_text().splitlines()]
    for stage in ("bon", "qalign"):
        ids = [json.loads(line)["id"] for line in (demo_dir / stage / "samples.jsonl").read_text().splitlines()]
        assert ids == base[:2]
        headline = json.loads((demo_dir / stage / "eval.json").read_text())
        assert headline["constraint_accuracy"]["n"] == 2 and headline["paired_vs_baseline"]["constraint_accuracy"]
    assert "| prompts |" in (demo_dir / "report.md").read_text()


def test_report_has_every_section(demo_dir: Path) -> None:
    html = (demo_dir / "report.html").read_text()
    for title in ("Summary", "Training curves", "Reward distributions", "Reward vs compute", "frontier"):
        assert title in html
    assert '<img src="data:image/png;base64,' in html


def test_rerun_skips_finished_stages(demo_dir: Path) -> None:
    messages: list[str] = []
    cfg_yaml = demo_dir / "config.yaml"
    from alignkit.config import load_config

    run_demo(load_config(DemoConfig, cfg_yaml), log=messages.append)
    assert sum("already done" in m for m in messages) == 8


def test_demo_trains_with_its_own_settings() -> None:
    """Every setting the demo shares with the recipe reaches the recipe round it runs (a field left out would
    silently train with the recipe's default instead)."""
    from dataclasses import fields

    from alignkit.pipelines.recipe import RecipeConfig

    demo = DemoConfig(n_train_prompts=7, per_prompt=3, min_distinct_2=0.5, lr=1e-4, lora_r=4, epochs=2.0,
                      batch_size=3, rounds=4, seed=5, call_rows=64, gen_batch_size=16, max_new_tokens=33,
                      data_temperature=0.6, temperature=0.9, n_samples=5, require_eos=False)
    recipe = demo.recipe()
    renamed = {"temperature": "eval_temperature", "data_temperature": "temperature", "n_samples": "samples_per_prompt"}
    shared = ({f.name for f in fields(DemoConfig)} & {f.name for f in fields(RecipeConfig)}) | set(renamed)
    for name in shared:
        assert getattr(recipe, renamed.get(name, name)) == getattr(demo, name), name
    assert (recipe.method, recipe.reward) == ("rft", "csr")
