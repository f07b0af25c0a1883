"""Every test-time strategy runs end to end from `alignkit generate` on constraint-suite prompts, and every
samples.jsonl row carries the compute record (forward tokens, generated tokens, reward calls) and its reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignkit.cli import main
from alignkit.data.suite import suite_records

COMPUTE_KEYS = {"forward_tokens", "generated_tokens", "reward_calls", "cached_tokens"}  # cached: issue 18


@pytest.fixture(scope="module")
def suite_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first two prompts of the first suite (suite:test-v1), with their constraints as reward context."""
    path = tmp_path_factory.mktemp("prompts") / "suite2.jsonl"
    rows = [{"id": r["id"], "prompt": r["prompt"], "constraints": r["constraints"]} for r in suite_records("test-v1")[:2]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [{"positive": "I am delighted to help you.", "negative": "I refuse to help you."},
            {"positive": "What a wonderful day.", "negative": "What a terrible day."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _generate(tmp_path: Path, prompts: Path, strategy: str, *extra: str, model: str = "tiny-random",
              tokens: int = 4) -> tuple[list[dict], dict]:
    out = tmp_path / strategy
    rc = main(["generate", "--strategy", strategy, "--model", model, "--prompts", str(prompts), "--reward", "csr",
               "--max-new-tokens", str(tokens), "--out-dir", str(out), *extra])
    assert rc == 0
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    return rows, yaml.safe_load((out / "config.yaml").read_text())


def _check_rows(rows: list[dict], strategy: str, ids: list[str]) -> None:
    assert [r["id"] for r in rows] == ids
    for r in rows:
        assert r["strategy"] == strategy
        assert isinstance(r["completion"], str)
        assert set(r["compute"]) == COMPUTE_KEYS
        assert all(isinstance(v, int) and v >= 0 for v in r["compute"].values())
        assert r["compute"]["forward_tokens"] > 0 and r["compute"]["generated_tokens"] > 0
        assert 0.0 <= r["reward"] <= 1.0  # csr = fraction of the row's constraints followed


STRATEGIES = [
    ("sample", ["--n", "2"], 0),
    ("bon", ["--n", "3"], 3),
    ("qalign", ["--n", "3", "--set", "beta=0.1", "--set", "select_by=last"], 4),
    ("deal", ["--set", "top_k=2", "--set", "beam=2", "--set", "lookahead=2"], None),
    ("nudge", ["--nudger", "tiny-random", "--set", "chunk=4"], 0),
    ("urial", ["--raw"], 0),
]


@pytest.mark.parametrize("strategy,extra,reward_calls", STRATEGIES, ids=[s[0] for s in STRATEGIES])
def test_strategy_rows_carry_compute(tmp_path: Path, suite_prompts: Path, capsys: pytest.CaptureFixture,
                                     strategy: str, extra: list[str], reward_calls: int | None) -> None:
    rows, config = _generate(tmp_path, suite_prompts, strategy, *extra)
    _check_rows(rows, strategy, ["test-0000", "test-0001"])
    assert config["strategy"] == strategy and config["reward"] == "csr"
    for r in rows:
        if reward_calls is not None:  # what the strategy itself spent on the reward (final scoring is not counted)
            assert r["compute"]["reward_calls"] == reward_calls
        else:  # DeAL: one call per candidate per step, at least top_k on the first step
            assert r["compute"]["reward_calls"] >= 2
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["prompts"] == 2
    assert summary["compute"] == {k: sum(r["compute"][k] for r in rows) for k in COMPUTE_KEYS}


def test_sample_generated_tokens_match_n_completions(tmp_path: Path, suite_prompts: Path) -> None:
    rows, _ = _generate(tmp_path, suite_prompts, "sample", "--n", "3", tokens=2)
    for r in rows:  # 3 samples of at most 2 tokens each; the prompt is encoded once
        assert len(r["candidates"]) == 3
        assert 3 <= r["compute"]["generated_tokens"] <= 6


def test_steer_extracts_vector_from_pairs(tmp_path: Path, suite_prompts: Path, pairs_file: Path) -> None:
    rows, config = _generate(tmp_path, suite_prompts, "steer", "--set", f"pairs={pairs_file}", "--set", "layers=1",
                             "--set", "alpha=2")
    _check_rows(rows, "steer", ["test-0000", "test-0001"])
    saved = Path(config["steering"]["vector"])
    assert saved.exists() and config["steering"]["layers"] == [1] and config["steering"]["alpha"] == 2.0
    # the saved vector is reusable as --set vector=...
    rows2, config2 = _generate(tmp_path / "again", suite_prompts, "steer", "--set", f"vector={saved}",
                               "--set", "alpha=2")
    assert config2["steering"]["vector"] == str(saved)
    assert [r["completion"] for r in rows2] == [r["completion"] for r in rows]  # same vector, same seed


def test_steer_without_vector_or_pairs_is_a_clear_error(tmp_path: Path, suite_prompts: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    rc = main(["generate", "--strategy", "steer", "--model", "tiny-random", "--prompts", str(suite_prompts),
               "--out-dir", str(tmp_path / "x")])
    assert rc == 2 and "pairs=" in capsys.readouterr().err
    bad = tmp_path / "bad_pairs.jsonl"
    bad.write_text(json.dumps({"positive": "yes"}) + "\n")
    rc = main(["generate", "--strategy", "steer", "--model", "tiny-random", "--prompts", str(suite_prompts),
               "--out-dir", str(tmp_path / "y"), "--set", f"pairs={bad}"])
    assert rc == 2 and "negative" in capsys.readouterr().err


@pytest.mark.slow
def test_bon_on_embedded_model(tmp_path: Path, suite_prompts: Path) -> None:
    rows, _ = _generate(tmp_path, suite_prompts, "bon", "--n", "2", model="smollm2-135m-instruct", tokens=8)
    _check_rows(rows, "bon", ["test-0000", "test-0001"])
    for r in rows:
        assert r["compute"]["reward_calls"] == 2 and len(r["candidates"]) == 2
        assert r["compute"]["generated_tokens"] <= 16
        assert r["reward"] == max(r["scores"])  # BoN keeps the best-scoring candidate


def test_extend_takes_a_budget_per_row() -> None:
    """QAlign continues every chain with its own budget (max_new_tokens − cut) in one batched call: each row stops
    at its own budget, exactly as if continued alone (greedy), and the accounting stays exact."""
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tok = load_model("tiny-random")
    sampler = HFSampler(model, tok)
    prompts, prefixes = ["Say hi", "Count to three", "Name a colour"], ["", "One", [28, 29]]
    before = sampler.compute.copy()
    batched = sampler.extend(prompts, prefixes, max_new_tokens=[1, 4, 2], temperature=0)
    spent = sampler.compute.minus(before)
    assert spent.forward_tokens == sum(s.forward_tokens for s in batched)
    assert spent.generated_tokens == sum(len(s.token_ids) for s in batched)
    for p, pre, budget, got in zip(prompts, prefixes, [1, 4, 2], batched, strict=True):
        alone = sampler.extend([p], [pre], max_new_tokens=budget, temperature=0)[0]
        assert got.token_ids == alone.token_ids and len(got.token_ids) <= budget
        assert got.finish_reason == alone.finish_reason


def test_qalign_states_respect_the_length_cap(tmp_path: Path, suite_prompts: Path) -> None:
    rows, _ = _generate(tmp_path, suite_prompts, "qalign", "--n", "6", "--set", "beta=0.1", tokens=5)
    for r in rows:
        assert all(1 <= n <= 5 for n in r["info"]["chain_lengths"])
        assert all(n <= 5 for n in r["info"]["proposal_lengths"])
        assert r["compute"]["reward_calls"] == 7
