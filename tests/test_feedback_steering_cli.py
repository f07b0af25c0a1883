"""SteerLM at inference (issue 19 item 5; spec wave2_selfalign_merge.md §7 "the same slot is used at train and
inference time"): `alignkit generate --attributes` conditions every prompt exactly as the training data was
conditioned, and `alignkit attribute-steering` reports whether asking for more of an attribute moves its score
(paired bootstrap CI), on tiny-random."""

from __future__ import annotations

import json

import pytest
import yaml

from alignkit.cli import main
from alignkit.data.records import ScoredExample
from alignkit.data.steerlm import parse_attribute_string, requested_attributes, steerlm_sft
from alignkit.decode import hf
from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import ConfigError


def test_requested_attributes_canonical_and_checked() -> None:
    # name=value (command-line style) and name:value (SteerLM's) both parse; the output is the training order
    assert requested_attributes("verbosity=1,helpfulness:4") == "helpfulness:4,verbosity:1"
    assert parse_attribute_string("helpfulness:4, verbosity=0") == {"helpfulness": 4.0, "verbosity": 0.0}
    for bad, why in (("verbosity:5", "outside the trained values"), ("verbosity:2.5", "outside the trained"),
                     ("verbosity", "not name:value"), ("verbosity:high", "not a number"), ("", "empty")):
        with pytest.raises(ConfigError, match=why):
            requested_attributes(bad)


@pytest.fixture
def seen(monkeypatch):
    """The prompts the model is asked to continue (HFSampler.sample's input)."""
    got: list = []
    real = hf.HFSampler.sample

    def spy(self, prompts, *a, **kw):
        got.extend(prompts)
        return real(self, prompts, *a, **kw)

    monkeypatch.setattr(hf.HFSampler, "sample", spy)
    return got


def _prompts(tmp_path, n=2):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(n)))
    return path


def test_generate_attributes_use_the_training_slot(tmp_path, seen) -> None:
    out = tmp_path / "gen"
    assert main(["generate", "--strategy", "sample", "--model", "tiny-random:1:32", "--prompts",
                 str(_prompts(tmp_path)), "--attributes", "verbosity=1,helpfulness=4", "--max-new-tokens", "3",
                 "--temperature", "0", "--reward", "words", "--out-dir", str(out)]) == 0
    trained = [steerlm_sft([ScoredExample(f"Question {i}?", "A.", {"helpfulness": 4, "verbosity": 1})])[0].prompt
               for i in range(2)]
    assert seen == trained  # the model sees exactly what SteerLM training put in the prompt
    assert seen[0][0] == {"role": "system", "content": "Attributes: helpfulness:4,verbosity:1"}
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["attributes"] for r in rows] == ["helpfulness:4,verbosity:1"] * 2
    assert yaml.safe_load((out / "config.yaml").read_text())["attributes"] == "helpfulness:4,verbosity:1"


def test_generate_attributes_end_the_system_message_and_refuse_raw(tmp_path, seen, capsys) -> None:
    args = ["generate", "--strategy", "sample", "--model", "tiny-random:1:32", "--prompts", str(_prompts(tmp_path, 1)),
            "--attributes", "verbosity:0", "--max-new-tokens", "2"]
    assert main([*args, "--system", "Be kind.", "--out-dir", str(tmp_path / "a")]) == 0
    assert seen[0][0]["content"] == "Be kind.\n\nAttributes: verbosity:0"
    assert main([*args, "--raw", "--out-dir", str(tmp_path / "b")]) == 2
    assert "cannot be combined with --raw" in capsys.readouterr().err
    assert main([*args[:-4], "--attributes", "verbosity:9", "--out-dir", str(tmp_path / "c")]) == 2


class LenSampler:
    """'verbosity:4' in the system message doubles the (fixed) answer: 2 words instead of 1."""

    def __init__(self, *_a, **_kw) -> None:
        self.compute = Compute()

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        return [[Sample("word word" if "verbosity:4" in p[0]["content"] else "word", [], 0.0, "stop")]
                for p in prompts]


def test_attribute_steering_cli_reports_the_paired_shift(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(hf, "HFSampler", LenSampler)
    out = tmp_path / "check"
    assert main(["attribute-steering", "--model", "tiny-random:1:32", "--reward", "words", "--prompts",
                 str(_prompts(tmp_path, 3)), "--attribute", "verbosity", "--n-resamples", "200",
                 "--out-dir", str(out)]) == 0
    (check,) = json.loads((out / "steering.json").read_text())["checks"]
    # word counts 2 (verbosity:4) vs 1 (verbosity:0) on every prompt: Δ = +1 with a degenerate CI, 100% moved up
    assert check["shift"]["verbosity"] == {"value": 1.0, "low": 1.0, "high": 1.0, "n": 3, "level": 0.95}
    assert check["moved_up"]["value"] == 1.0
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [(r["low"], r["high"], r["score_low"], r["score_high"]) for r in rows] == [("word", "word word", 1, 2)] * 3
    assert "verbosity 0→4: Δverbosity = +1.0000" in capsys.readouterr().out
    assert main(["attribute-steering", "--reward", "words", "--prompts", str(_prompts(tmp_path)), "--attribute",
                 "verbosity", "--high", "7", "--out-dir", str(out)]) == 2


def test_attribute_steering_cli_on_tiny_random(tmp_path) -> None:
    out = tmp_path / "check"
    assert main(["attribute-steering", "--model", "tiny-random:1:32", "--reward", "words", "--prompts",
                 str(_prompts(tmp_path)), "--attribute", "verbosity", "--attribute", "helpfulness",
                 "--max-new-tokens", "4", "--n-resamples", "100", "--out-dir", str(out)]) == 0
    report = json.loads((out / "steering.json").read_text())
    assert [c["attribute"] for c in report["checks"]] == ["verbosity", "helpfulness"]
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    mean = sum(r["score_high"] - r["score_low"] for r in rows[:2]) / 2
    assert report["checks"][0]["shift"]["verbosity"]["value"] == pytest.approx(mean)


class KeywordSampler(LenSampler):
    """'correctness:4' gets an answer with the keyword the prompt's constraint asks for; 'correctness:0' does not."""

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        return [[Sample("A kettle boils." if "correctness:4" in p[0]["content"] else "Tea is hot.", [], 0.0,
                        "stop")] for p in prompts]


def test_attribute_steering_passes_constraints_to_a_verifier(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(hf, "HFSampler", KeywordSampler)
    rows = tmp_path / "c.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"Write about tea {i}.", "constraints": [
        {"id": "keywords:existence", "kwargs": {"keywords": ["kettle"]}}]}) + "\n" for i in range(2)))
    out = tmp_path / "check"
    assert main(["attribute-steering", "--model", "tiny-random:1:32", "--reward", "csr", "--score-as-attribute",
                 "--prompts", str(rows), "--attribute", "correctness", "--n-resamples", "200",
                 "--out-dir", str(out)]) == 0
    (check,) = json.loads((out / "steering.json").read_text())["checks"]
    assert check["shift"]["correctness"]["value"] == 1.0 and check["moved_up"]["value"] == 1.0
