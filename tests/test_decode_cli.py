"""`alignkit generate` end to end on the tiny model."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.decode.steer import extract_steering_vector
from alignkit.models import load_model


@pytest.fixture()
def prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"id": "a", "prompt": "Say hello", "references": ["hello there"]},
            {"prompt": [{"role": "user", "content": "Name a colour"}]},
            {"id": "c", "prompt": "Count to three"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("strategy,extra", [
    ("sample", ["--n", "2"]),
    ("bon", ["--n", "3", "--reward", "length:1:3"]),
    ("qalign", ["--n", "3", "--reward", "length:1:3", "--set", "beta=0.5"]),
    ("deal", ["--reward", "keyword:the", "--set", "top_k=2", "--set", "beam=1", "--set", "lookahead=1"]),
    ("urial", []),
    ("spec_reject", ["--n", "4", "--reward", "length:1:3", "--set", "checkpoints=[1]",
                     "--set", "partial_reward=keyword:the"]),
])
def test_generate_writes_samples(tmp_path, prompts, capsys, strategy, extra) -> None:
    out = tmp_path / strategy
    rc = main(["generate", "--strategy", strategy, "--model", "tiny-random", "--prompts", str(prompts),
               "--out-dir", str(out), "--max-new-tokens", "3", "--batch-size", "2", *extra])
    assert rc == 0
    rows = _rows(out / "samples.jsonl")
    assert [r["id"] for r in rows] == ["a", 1, "c"]
    for r in rows:
        assert r["strategy"] == strategy and isinstance(r["completion"], str)
        assert r["compute"]["forward_tokens"] > 0
    assert (out / "config.yaml").exists()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["prompts"] == 3
    if "--reward" in extra:
        assert all("reward" in r for r in rows)
    if strategy == "spec_reject":  # the ranker is loaded from its spec; config.yaml keeps the spec
        assert all(r["info"]["partial_reward"] == "keyword:the" for r in rows)
        assert "partial_reward: keyword:the" in (out / "config.yaml").read_text()


def test_generate_steer_and_system(tmp_path, prompts) -> None:
    model, tok = load_model("tiny-random")
    vec = extract_steering_vector(model, tok, [("good", "bad"), ("happy", "sad")], [0])
    path = vec.save(tmp_path / "v.safetensors")
    out = tmp_path / "steer"
    rc = main(["generate", "--strategy", "steer", "--model", "tiny-random", "--prompts", str(prompts),
               "--out-dir", str(out), "--max-new-tokens", "2", "--set", f"vector={path}", "--set", "alpha=2",
               "--system", "Be brief."])
    assert rc == 0 and len(_rows(out / "samples.jsonl")) == 3


def test_generate_errors_are_clear(tmp_path, prompts, capsys) -> None:
    rc = main(["generate", "--strategy", "qalign", "--model", "tiny-random", "--prompts", str(prompts),
               "--out-dir", str(tmp_path / "x")])
    assert rc == 2 and "needs a reward" in capsys.readouterr().err
    rc = main(["generate", "--strategy", "sample", "--model", "tiny-random", "--prompts", str(prompts),
               "--out-dir", str(tmp_path / "y"), "--set", "bogus=1"])
    assert rc == 2 and "bogus" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    rc = main(["generate", "--strategy", "sample", "--model", "tiny-random", "--prompts", str(bad),
               "--out-dir", str(tmp_path / "z")])
    assert rc == 2 and "prompt" in capsys.readouterr().err
