"""Reward spec strings, user functions, malformed rewards, and the `alignkit reward` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.errors import RewardError
from alignkit.rewards.base import FunctionReward, RewardResult, call_reward
from alignkit.rewards.registry import load_reward

USER = '''
def per_example(prompt, completion):
    return float(len(completion.split()))

def batched(prompts, completions, **context):
    return [1.0] * len(completions)

def boom(prompts, completions):
    raise ValueError("kaput")

def nan(prompts, completions):
    return [float("nan")] * len(completions)

def short(prompts, completions):
    return [1.0]
'''


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(USER)
    return path


@pytest.mark.parametrize("spec,completions,want", [
    ("keyword:cat,-dog", ["a cat", "cat and dog"], [1.0, 0.0]),
    ("regex:^\\d+$", ["123", "12a"], [1.0, 0.0]),
    ("length:2:3", ["one two", "one"], [1.0, 0.0]),
    ("length::1:chars", ["a", "ab"], [1.0, 0.0]),
    ("json", ['{"a": 1}', "{"], [1.0, 0.0]),
    ("2*keyword:cat + -1*length::1", ["cat", "a cat"], [1.0, 2.0]),
])
def test_spec_strings(spec: str, completions: list[str], want: list[float]) -> None:
    r = load_reward(spec)
    assert call_reward(r, ["p"] * len(completions), completions).scores == want


def test_builtin_names() -> None:
    names = {s: load_reward(s).name for s in ("ifeval", "ifeval_loose", "csr", "csr_loose", "bleu",
                                              "bleu:sacrebleu", "chrf", "chrf++")}
    assert names["csr_loose"] == "csr_loose" and names["bleu"] == "bleu"


def test_json_schema_spec(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "array"}))
    assert call_reward(load_reward(f"json_schema:{schema}"), ["p", "p"], ["[1]", "{}"]).scores == [1.0, 0.0]


def test_user_functions(user_file: Path) -> None:
    assert call_reward(load_reward(f"{user_file}:per_example"), ["p"], ["a b c"]).scores == [3.0]
    assert call_reward(load_reward(f"{user_file}:batched"), ["p"], ["x"], references=[["r"]]).scores == [1.0]


@pytest.mark.parametrize("fn,match", [
    ("boom", "reward '.*:boom' raised ValueError: kaput"),
    ("nan", "reward '.*:nan' returned a non-finite score \\(nan\\) at index 0"),
    ("short", "reward '.*:short' returned 1 scores for 2 completions"),
])
def test_malformed_user_rewards_name_the_reward(user_file: Path, fn: str, match: str) -> None:
    with pytest.raises(RewardError, match=match):
        call_reward(load_reward(f"{user_file}:{fn}"), ["p", "q"], ["a", "b"])


def test_check_result_variants() -> None:
    with pytest.raises(RewardError, match="reward 'obj' returned str"):
        call_reward(FunctionReward(lambda p, c: "oops", name="obj"), ["p"], ["c"])
    with pytest.raises(RewardError, match="non-numeric score 'x'"):
        call_reward(FunctionReward(lambda p, c: ["x"], name="obj"), ["p"], ["c"])
    with pytest.raises(RewardError, match="1 attribute rows for 2"):
        call_reward(FunctionReward(lambda p, c: RewardResult([1.0, 2.0], [{}]), name="obj"), ["p", "q"], ["a", "b"])
    with pytest.raises(RewardError, match="2 prompts but 1 completions"):
        call_reward(load_reward("json"), ["p", "q"], ["a"])


@pytest.mark.parametrize("spec,match", [
    ("nonsense", "unknown reward spec 'nonsense'"),
    ("no_such_module_xyz:f", "no module 'no_such_module_xyz'"),
    ("math:no_such_fn", "has no attribute 'no_such_fn'"),
    ("length:a:b", "MIN and MAX must be integers"),
    ("rm:", "needs a reward model directory"),
    ("json_schema:/nope.json", "not found"),
])
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(RewardError, match=match):
        load_reward(spec)


def test_cli_score_joins_by_id_and_writes_attributes(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "prompt": "Mention a cat.", "instruction_id_list": ["keywords:existence"],
         "kwargs": [{"keywords": ["cat"]}]},
        {"id": "b", "prompt": "No commas.", "constraints": [{"id": "punctuation:no_comma", "kwargs": {}}]},
    ]) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text("\n".join(json.dumps(r) for r in [
        {"id": "b", "completion": "a, b"}, {"id": "a", "completions": ["my cat", "my dog"]}]) + "\n")
    out = tmp_path / "scores.jsonl"
    assert main(["reward", "score", "--reward", "ifeval", "--data", str(prompts), "--completions", str(samples),
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["score"]) for r in rows] == [("b", 0.0), ("a", 1.0), ("a", 0.0)]
    assert rows[1]["attributes"]["constraints"][0]["id"] == "keywords:existence"
    # Unmatched ids are an error naming the file and line, not a silent drop.
    samples.write_text(json.dumps({"id": "zzz", "completion": "x"}) + "\n")
    assert main(["reward", "score", "--reward", "ifeval", "--data", str(prompts), "--completions", str(samples),
                 "--out", str(out)]) == 2


def test_cli_eval_pairs_and_detection(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "q", "chosen": "a long good answer", "rejected": "no", "subset": "alpacaeval-easy"},
        {"prompt": "q", "chosen": "ok", "rejected": "a long bad answer", "subset": "donotanswer"},
        {"prompt": "q", "chosen": "three words here", "rejected": "two", "subset": "donotanswer"},
    ]) + "\n")
    out = tmp_path / "ev"
    assert main(["reward", "eval", "--reward", "length:3:", "--data", str(pairs), "--out-dir", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(2 / 3) and m["by_category"]["donotanswer"]["accuracy"] == 0.5
    assert set(m) >= {"calibration_bin5", "calibration_bin10", "calibration_bin20", "rewardbench_sections"}
    assert (out / "reliability.png").exists()
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in [
        ("short", 0), ("a much longer machine text", 1), ("tiny", 0), ("another long generated answer", 1)]) + "\n")
    assert main(["reward", "eval", "--reward", "length:3:", "--data", str(texts), "--out-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["auroc"] == 1.0
