"""`alignkit reward train` end to end, then `reward eval` and `reward score` on the trained RM directory."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from alignkit.cli import main

WORDS = "the a river stone cloud quiet green fast small bright old window paper garden".split()


def write_pairs(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append({"prompt": f"Write something #{i}.",
                     "chosen": " ".join(rng.choice(WORDS) for _ in range(5)) + " banana",
                     "rejected": " ".join(rng.choice(WORDS) for _ in range(5)), "category": "marker"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reward_train_then_eval_then_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, held = write_pairs(tmp_path / "train.jsonl", 96, 0), write_pairs(tmp_path / "held.jsonl", 32, 1)
    run = tmp_path / "run"
    rc = main(["reward", "train", "--objective", "bt", "--model", "tiny-random", "--data", str(train),
               "--eval-data", str(held), "--output-dir", str(run), "--max-steps", "12",
               "--set", "lr=3e-3", "--set", "batch_size=8", "--set", "max_length=64", "--set", "progress=false",
               "--set", "scheduler=constant", "--set", "torch_threads=1"])
    assert rc == 0
    assert "RM directory" in capsys.readouterr().out
    report = json.loads((run / "eval.json").read_text())
    assert report["accuracy"] >= 0.8 and (run / "reliability.png").exists()
    assert (run / "metrics.jsonl").exists() and (run / "checkpoints" / "step-12").exists()

    out = tmp_path / "eval"
    assert main(["reward", "eval", "--reward", f"rm:{run / 'final'}", "--data", str(held), "--out-dir",
                 str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(report["accuracy"])  # same RM, same pairs
    assert metrics["by_category"]["marker"]["n"] == 32

    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"prompt": "Say something.", "completions": ["river stone banana",
                                                                                "river stone"]}) + "\n")
    scores = tmp_path / "scores.jsonl"
    assert main(["reward", "score", "--reward", f"rm:{run / 'final'}", "--completions", str(samples), "--out",
                 str(scores)]) == 0
    rows = [json.loads(x) for x in scores.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["score"] > rows[1]["score"]


def test_reward_train_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reward", "train", "--model", "tiny-random", "--output-dir", str(tmp_path / "x")]) == 2
    assert "no training data" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    assert main(["reward", "train", "--model", "tiny-random", "--data", str(bad), "--output-dir",
                 str(tmp_path / "y")]) == 2
    assert "rejected" in capsys.readouterr().err
    assert main(["reward", "train", "--data", str(bad), "--set", "tune=sideways"]) == 2
    assert "tune" in capsys.readouterr().err


def test_reward_train_help_lists_objectives(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["reward", "train", "--help"])
    text = capsys.readouterr().out
    for word in ("bt", "regression", "more", "pal", "principle", "--eval-data", "examples:"):
        assert word in text


@pytest.mark.slow
def test_reward_train_on_the_embedded_model_with_lora(tmp_path: Path) -> None:
    train, held = write_pairs(tmp_path / "train.jsonl", 16, 0), write_pairs(tmp_path / "held.jsonl", 8, 1)
    run = tmp_path / "smol"
    assert main(["reward", "train", "--objective", "bt", "--model", "smollm2-135m-instruct", "--data", str(train),
                 "--eval-data", str(held), "--output-dir", str(run), "--tune", "lora", "--max-steps", "3",
                 "--set", "batch_size=2", "--set", "lr=1e-4", "--set", "lora.r=4", "--set", "max_length=64",
                 "--set", "progress=false", "--set", "torch_threads=1"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(rows) == 3 and all(r["loss"] == r["loss"] for r in rows)
    assert "lora" not in (run / "final" / "model.safetensors").read_bytes()[:20000].decode("latin-1")  # merged
    report = json.loads((run / "eval.json").read_text())
    assert report["n"] == 8 and 0.0 <= report["accuracy"] <= 1.0
    out = tmp_path / "scores.jsonl"
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"prompt": "Hi", "completion": "Hello!"}) + "\n")
    assert main(["reward", "score", "--reward", f"rm:{run / 'final'}", "--completions", str(samples),
                 "--out", str(out)]) == 0
