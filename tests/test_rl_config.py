"""Online-RL configuration, prompt data, BLEUBERI selection, recipes and the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.config import load_config
from alignkit.data.records import PromptExample
from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import ConfigError, DataError
from alignkit.rewards.base import FunctionReward
from alignkit.rl.config import online_args
from alignkit.rl.data import load_prompts
from alignkit.rl.select import select_prompts
from alignkit.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_online_args_defaults_follow_trl_017_and_rloo() -> None:
    g = online_args("grpo", {})
    assert (g.num_generations, g.epsilon, g.temperature, g.num_iterations) == (8, 0.2, 0.9, 1)
    assert g.resolved_loss_type("grpo") == "token" and g.resolved_scale() == "group"
    assert online_args("rloo", {}).resolved_loss_type("rloo") == "sequence"
    assert online_args("grpo", {"loss_type": "dr_grpo"}).resolved_loss_type("grpo") == "dr_grpo"


@pytest.mark.parametrize("bad, match", [
    ({"num_generation": 4}, "unknown config key"),
    ({"num_generations": 1}, "num_generations"),
    ({"loss_type": "mean"}, "aggregation"),
    ({"scale_rewards": "yes"}, "scale_rewards"),
    ({"reward": ["csr", "bleu"], "reward_weights": [1.0]}, "reward_weights"),
    ({"select": "hard"}, "select_num"),
])
def test_bad_online_args_fail_loudly(bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        online_args("grpo", bad)


def test_prompt_file_errors_name_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hi", "references": "a ref"}\n{"text": "no prompt"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'prompt'"):
        load_prompts(str(f))
    f.write_text('{"prompt": "hi", "references": "a ref", "id": 3}\n')
    (rec,) = load_prompts(str(f))
    assert rec.references == ["a ref"] and rec.metadata == {"id": 3}
    suite = load_prompts("suite:train", limit=5)
    assert len(suite) == 5 and all(r.constraints for r in suite)


class ScriptedSampler:
    """Returns the prompt's own text as the completion (so a reward can be read off the prompt)."""

    def __init__(self) -> None:
        self.compute = Compute()

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        return [[Sample(text=p, token_ids=[1], logprob=0.0, finish_reason="eos") for _ in range(n)] for p in prompts]


def test_bleuberi_selection_modes() -> None:
    recs = [PromptExample(str(v)) for v in (0.5, 0.1, 0.9, 0.3, 0.7)]
    reward = FunctionReward(lambda prompts, completions, **_: [float(c) for c in completions], name="value")
    hard = select_prompts(ScriptedSampler(), reward, recs, 2, "hard")
    assert [r.prompt for r in hard.records] == ["0.1", "0.3"] and hard.scores == [0.5, 0.1, 0.9, 0.3, 0.7]
    assert [r.prompt for r in select_prompts(ScriptedSampler(), reward, recs, 2, "easy").records] == ["0.9", "0.7"]
    assert [r.prompt for r in select_prompts(ScriptedSampler(), reward, recs, 1, "medium").records] == ["0.5"]
    rnd = select_prompts(ScriptedSampler(), reward, recs, 3, "random", seed=1)
    assert len(rnd.records) == 3 and rnd.scores == []
    with pytest.raises(ConfigError, match="mode"):
        select_prompts(ScriptedSampler(), reward, recs, 2, "hardest")


@pytest.mark.parametrize("recipe", ["bleuberi.yaml", "act.yaml"])
def test_recipes_are_valid_configs(recipe: str) -> None:
    cfg = load_config(TrainConfig, ROOT / "recipes" / recipe)
    args = online_args(cfg.objective, cfg.objective_args)
    assert cfg.objective == "grpo" and cfg.lora.enabled and cfg.reference == "adapter"
    from alignkit.rl.trainer import build_reward

    assert build_reward(args)[0].name in ("bleu", "csr")
    if recipe == "act.yaml":  # the recipe's documented `--set objective=rloo` stays a valid config
        online_args("rloo", cfg.objective_args)
    if cfg.data.startswith("suite:"):
        assert load_prompts(cfg.data)
    else:
        assert all(r.references for r in load_prompts(str(ROOT / cfg.data)))


@pytest.mark.parametrize("objective", ["rloo", "grpo_loo"])
def test_cli_train_dispatches_online_objectives(tmp_path: Path, objective: str) -> None:
    from alignkit.cli import main

    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Hi", "Name a colour.")))
    out = tmp_path / "run"
    rc = main(["train", "--model", "tiny-random", "--data", str(data), "--objective", objective, "--output-dir",
               str(out), "--set", "max_steps=1", "--set", "batch_size=2", "--set", "beta=0", "--set",
               "progress=false", "--set", "objective_args.reward=keyword:a", "--set",
               "objective_args.num_generations=2", "--set", "objective_args.max_new_tokens=3"])
    assert rc == 0
    (rec,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rec["step"] == 1 and rec["completion_length"] <= 3
    assert (out / "config.yaml").exists() and (out / "checkpoints" / "step-1" / "COMPLETE").exists()
