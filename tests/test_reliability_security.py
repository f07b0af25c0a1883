"""Security (issue #14 item 16): a reward spec that imports code runs only when the user asked for it.

Given on the command line it is the user's own choice; named by a config file (an eval config, a training recipe, a
resumed run's config.yaml) it needs `--allow-code-rewards` or ALIGNKIT_ALLOW_CODE_REWARDS=1, and is refused before
anything is imported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignkit.cli import build_parser, main
from alignkit.cli.train import build_config
from alignkit.errors import RewardError
from alignkit.rewards.registry import CODE_REWARDS_ENV, check_config_rewards, code_reward_terms


@pytest.fixture(autouse=True)
def no_env_permission(monkeypatch):
    monkeypatch.delenv(CODE_REWARDS_ENV, raising=False)


@pytest.fixture()
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """A reward file whose import leaves a marker: the marker proves the code ran."""
    marker = tmp_path / "imported.txt"
    path = tmp_path / "evil_reward.py"
    path.write_text(f"open({str(marker)!r}, 'w').write('ran')\n\n"
                    "def score(prompt, completion):\n    return float(len(completion))\n")
    return path, marker


@pytest.fixture()
def eval_files(tmp_path: Path) -> tuple[Path, Path]:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "Say hi."}) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"id": "a", "completion": "hi"}) + "\n")
    return prompts, samples


def eval_config(tmp_path: Path, eval_files: tuple[Path, Path], reward: str) -> Path:
    prompts, samples = eval_files
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump({"samples": str(samples), "prompts": str(prompts), "reward": reward,
                                   "output_dir": str(tmp_path / "run"), "n_resamples": 20}))
    return cfg


@pytest.mark.parametrize(("spec", "code"), [
    ("csr", []), ("ifeval_loose", []), ("bleu:sacrebleu", []), ("regex:a:b", []), ("keyword:a,-b", []),
    ("length:1:5:chars", []), ("json_schema:s.json", []), ("rm:runs/rm/final", []),
    ("my_rewards.py:brevity", ["my_rewards.py:brevity"]), ("pkg.mod:f", ["pkg.mod:f"]),
    ("0.5*csr + 0.5*my.py:f", ["my.py:f"]), (["csr", "m:f"], ["m:f"]),
])
def test_code_reward_terms_are_exactly_the_imports(spec, code):
    assert code_reward_terms(spec) == code


def test_eval_config_with_a_code_reward_is_refused_without_the_flag(tmp_path, eval_files, evil, capsys):
    path, marker = evil
    cfg = eval_config(tmp_path, eval_files, f"{path}:score")
    assert main(["eval", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: reward spec '{path}:score' imports and runs Python code" in err
    assert "--allow-code-rewards" in err and CODE_REWARDS_ENV in err
    assert not marker.exists(), "the file must not even be imported"


def test_eval_config_with_a_code_reward_runs_with_the_flag(tmp_path, eval_files, evil):
    path, marker = evil
    cfg = eval_config(tmp_path, eval_files, f"{path}:score")
    assert main(["eval", str(cfg), "--allow-code-rewards"]) == 0
    assert marker.read_text() == "ran"


def test_eval_config_with_a_code_reward_runs_with_the_environment_variable(tmp_path, eval_files, evil, monkeypatch):
    path, marker = evil
    monkeypatch.setenv(CODE_REWARDS_ENV, "1")
    assert main(["eval", str(eval_config(tmp_path, eval_files, f"{path}:score"))]) == 0
    assert marker.exists()


def test_a_code_reward_typed_on_the_command_line_needs_no_flag(tmp_path, eval_files, evil):
    path, marker = evil
    prompts, samples = eval_files
    assert main(["eval", "--samples", str(samples), "--prompts", str(prompts), "--reward", f"{path}:score",
                 "--output-dir", str(tmp_path / "cli"), "--set", "n_resamples=20"]) == 0
    assert marker.exists()


def test_a_command_line_reward_overrides_a_config_file_code_reward(tmp_path, eval_files, evil):
    """The config's code reward is never loaded when --reward replaces it, so there is nothing to allow."""
    path, marker = evil
    cfg = eval_config(tmp_path, eval_files, f"{path}:score")
    assert main(["eval", str(cfg), "--reward", "csr_loose"]) == 0
    assert not marker.exists()


def recipe(tmp_path: Path, reward) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": "tiny-random", "data": "suite:train", "objective": "grpo",
                                    "output_dir": str(tmp_path / "rl"), "objective_args": {"reward": reward}}))
    return path


def test_training_recipe_with_a_code_reward_is_refused_before_anything_loads(tmp_path, evil, capsys):
    path, marker = evil
    cfg = recipe(tmp_path, ["csr", f"0.5*{path}:score + 0.5*csr"])
    assert main(["train", str(cfg)]) == 2
    assert "--allow-code-rewards" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "rl").exists()


def test_training_recipe_code_reward_with_the_flag_or_typed_with_set(tmp_path, evil):
    path, _ = evil
    cfg = recipe(tmp_path, f"{path}:score")
    parser = build_parser()
    assert build_config(parser.parse_args(["train", str(cfg), "--allow-code-rewards"])).objective_args["reward"] \
        == f"{path}:score"
    # The same spec given with --set on the command line is the user's own.
    typed = parser.parse_args(["train", str(recipe(tmp_path, "csr")), "--set", f"objective_args.reward={path}:score"])
    assert build_config(typed).objective_args["reward"] == f"{path}:score"


def test_resuming_reads_the_run_config_yaml_which_is_a_config_file(tmp_path, evil):
    path, _ = evil
    run = tmp_path / "rl"
    run.mkdir()
    (run / "config.yaml").write_text(recipe(tmp_path, f"{path}:score").read_text())
    args = build_parser().parse_args(["train", "--output-dir", str(run), "--resume"])
    with pytest.raises(RewardError, match=r"config\.yaml: reward spec .* imports and runs Python code"):
        build_config(args)


def test_check_config_rewards_without_a_config_file_allows_everything():
    check_config_rewards("evil.py:f", source=None)  # everything came from the command line or from Python
    with pytest.raises(RewardError, match="from a config file"):
        check_config_rewards("evil.py:f", ["csr"], source="c.yaml")
