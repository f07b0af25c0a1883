"""LSC in online RL (spec objectives.md §8; issue 13 item 4): per-prompt reference rewards r_ref,k(x) and the
AND-combination Σ_k log σ(r_k − r_ref,k), built from `log_sigmoid_transform` and `all_of`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alignkit.data.records import PromptExample
from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import ConfigError
from alignkit.rewards.base import FunctionReward
from alignkit.rl.config import online_args
from alignkit.rl.lsc import fit_base_references, lsc_reward
from alignkit.rl.rollout import rollout
from alignkit.rl.trainer import build_reward, run_online
from alignkit.train.config import TrainConfig

LSC_AND = -1.6265234  # spec §8: log σ(1) + log σ(−1)
LSC_ONE = -0.3132617  # log σ(1)


def field(name: str) -> FunctionReward:
    """Reads `name=<number>` out of a completion, so a completion states its own reward."""
    def fn(prompts, completions, **_):
        return [float(re.search(rf"{name}=(-?[\d.]+)", c).group(1)) for c in completions]

    return FunctionReward(fn, name=name)


class BaseSampler:
    """The 'base policy': fixed samples per prompt (ignores n beyond what it has)."""

    def __init__(self, samples: dict[str, list[str]]) -> None:
        self.samples, self.compute = samples, Compute()

    def encode_prompt(self, prompt, index=0):
        return [1]

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        return [[Sample(text=t, token_ids=[1], logprob=0.0, finish_reason="eos") for t in self.samples[p][:n]]
                for p in prompts]


BASE = {"p1": ["a=1 b=2", "a=2 b=4", "a=3 b=6"],   # medians: a 2, b 4
        "p2": ["a=10 b=0", "a=20 b=0", "a=30 b=0"]}  # medians: a 20, b 0
RECORDS = [PromptExample("p1"), PromptExample("p2")]


def test_and_combination_against_per_prompt_base_references_matches_the_spec() -> None:
    reward, parts = lsc_reward([field("a"), field("b")])
    tables = fit_base_references(parts, BaseSampler(BASE), RECORDS, n=3, max_new_tokens=4, temperature=1.0)
    assert tables == [{"p1": 2.0, "p2": 20.0}, {"p1": 4.0, "p2": 0.0}]
    # p1: a − 2 = 1, b − 4 = −1; p2: a − 20 = 1, b − 0 = −1: the spec's AND example, each against its own prompt
    res = reward(["p1", "p2", "p1"], ["a=3 b=3", "a=21 b=-1", "a=3 b=10000"])
    assert res.scores[0] == pytest.approx(LSC_AND, abs=1e-6)
    assert res.scores[1] == pytest.approx(LSC_AND, abs=1e-6)
    # a property far above its reference saturates at 0: the sum is ≈ the other property's term alone
    assert res.scores[2] == pytest.approx(LSC_ONE, abs=1e-6)


def test_reference_statistic_is_a_parameter() -> None:
    _, parts = lsc_reward([field("a")], statistic="q1.0")
    assert fit_base_references(parts, BaseSampler(BASE), RECORDS, n=3, max_new_tokens=4,
                               temperature=1.0) == [{"p1": 3.0, "p2": 30.0}]


def test_group_reference_is_the_statistic_of_the_step_group() -> None:
    # reward_ref: group: the G = 3 samples of the prompt are its own reference (median a = 2 → a − 2 ∈ {−1, 0, 1})
    reward, parts = lsc_reward([field("a")])
    ro = rollout(BaseSampler(BASE), reward, RECORDS[:1], group_size=3, max_new_tokens=4, temperature=1.0,
                 group_references=parts)
    assert ro.rewards.tolist() == pytest.approx([-1.3132617, -0.6931472, LSC_ONE], abs=1e-6)


def test_online_config_builds_the_and_combination_of_registry_rewards() -> None:
    args = online_args("grpo", {"reward": ["keyword:a", "keyword:b"], "reward_transform": "log_sigmoid",
                                "reward_ref_statistic": "q0.75"})
    reward, raw, parts = build_reward(args)
    assert len(parts) == 2 and all(p.statistic == "q0.75" for p in parts)
    assert reward.rewards == parts and raw is not reward
    with pytest.raises(ConfigError, match="per-prompt reference"):
        online_args("grpo", {"reward_transform": "log_sigmoid", "reward_ref": 0.5})
    with pytest.raises(ConfigError, match="reward_ref_statistic"):
        online_args("grpo", {"reward_ref_statistic": "mode"})


def test_alignkit_train_fits_base_references_before_the_first_update(tmp_path: Path) -> None:
    cfg = TrainConfig(model="tiny-random", objective="grpo", output_dir=str(tmp_path), batch_size=2, max_steps=1,
                      beta=0.0, progress=False,
                      objective_args={"reward": ["keyword:a", "keyword:e"], "reward_transform": "log_sigmoid",
                                      "reward_ref_samples": 2, "num_generations": 2, "max_new_tokens": 3})
    res = run_online(cfg, prompts=[PromptExample("Hi"), PromptExample("Name a colour.")], log=lambda _m: None)
    refs = [json.loads(x) for x in (tmp_path / "lsc_references.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in refs] == ["Hi", "Name a colour."]
    assert all(len(r["reference_reward"]) == 2 and None not in r["reference_reward"].values() for r in refs)
    samples = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["reward"] <= 0.0 for s in samples)  # Σ log σ(·) ≤ 0
    assert any(k.startswith("reward/lsc(") for k in res.history[0])
