"""`alignkit eval` writes a run directory with headline metrics (with CIs) that the report can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.errors import ConfigError, DataError
from alignkit.evaluate.evaluation import EvalConfig, evaluate
from alignkit.evaluate.report import summary_table


def _write_prompts(path: Path) -> None:
    rows = [
        {"id": "a", "prompt": "Write one word.", "constraints": [{"id": "change_case:english_lowercase", "kwargs": {}}]},
        {"id": "b", "prompt": "Say hi.", "constraints": [{"id": "keywords:existence", "kwargs": {"keywords": ["hi"]}}]},
        {"id": "c", "prompt": "Reply.", "constraints": [{"id": "punctuation:no_comma", "kwargs": {}}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    p = tmp_path / "prompts.jsonl"
    _write_prompts(p)
    return p


def test_scoring_a_samples_file_gives_exact_constraint_accuracy(tmp_path: Path, prompts: Path) -> None:
    samples = tmp_path / "s.jsonl"
    completions = {"a": "this is a short reply written in plain english words", "b": "Hi there", "c": "one, two"}  # a: lowercase ok; b: has 'hi'; c: comma fails
    samples.write_text("".join(json.dumps({"id": k, "completion": v}) + "\n" for k, v in completions.items()))
    out = evaluate(EvalConfig(model=None, samples=str(samples), prompts=str(prompts), reward="ifeval",
                              output_dir=str(tmp_path / "run"), n_resamples=200))
    assert out["constraint_accuracy"]["value"] == pytest.approx(2 / 3)
    assert out["reward"]["value"] == pytest.approx(2 / 3)
    low, high = out["reward"]["low"], out["reward"]["high"]
    assert low <= 2 / 3 <= high
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in rows] == [1.0, 1.0, 0.0]


_OURS = (("a", "this is a short reply written in plain english words"), ("b", "hi"), ("c", "a, b"))  # ifeval 1, 1, 0


def _baseline(tmp_path: Path, rewards: tuple[float, ...], spec: str | None, completion: str = "X, Y") -> Path:
    base = tmp_path / f"base-{spec}"
    base.mkdir()
    (base / "samples.jsonl").write_text("".join(
        json.dumps({"id": k, "completion": completion, "reward": r}) + "\n" for k, r in zip("abc", rewards, strict=True)))
    if spec is not None:
        (base / "eval.json").write_text(json.dumps({"reward": {"value": 0.0, "low": 0.0, "high": 0.0, "name": spec}}))
    return base


def _eval_against(tmp_path: Path, prompts: Path, base: Path, name: str) -> dict:
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"id": k, "completion": v}) + "\n" for k, v in _OURS))
    return evaluate(EvalConfig(model=None, samples=str(samples), prompts=str(prompts), reward="ifeval",
                               baseline=str(base), output_dir=str(tmp_path / name), n_resamples=400))


def test_win_rate_uses_stored_baseline_rewards_of_the_same_reward_spec(tmp_path: Path, prompts: Path) -> None:
    out = _eval_against(tmp_path, prompts, _baseline(tmp_path, (0.0, 1.0, 1.0), "ifeval"), "run")
    # a: 1 vs 0 win; b: 1 vs 1 tie; c: 0 vs 1 loss -> (1 + 0.5 + 0) / 3
    assert out["win_rate"]["value"] == pytest.approx(0.5) and out["win_rate"]["baseline_rewards"] == "stored"
    assert out["baseline"]["reward"]["value"] == pytest.approx(2 / 3)
    # Paired differences over ids a, b, c: reward (1-0, 1-1, 0-1) -> 0; prompt-strict accuracy: ours (1, 1, 0),
    # the baseline's "X, Y" fails all three constraints -> 2/3. Resampled means of (1, 1, 0) take the values 0
    # (P = 1/27 > 2.5%) up to 1 (P = 8/27), so the 95% interval is [0, 1].
    paired = out["paired_vs_baseline"]
    assert paired["reward"]["value"] == pytest.approx(0.0) and paired["reward"]["n"] == 3
    assert paired["constraint_accuracy"] == pytest.approx({"value": 2 / 3, "low": 0.0, "high": 1.0, "n": 3})
    assert out["baseline"]["constraint_accuracy"]["value"] == 0.0


def test_baseline_rewards_of_another_or_unknown_spec_are_rescored(tmp_path: Path, prompts: Path) -> None:
    for spec, name in (("csr", "run-csr"), (None, "run-unknown")):
        out = _eval_against(tmp_path, prompts, _baseline(tmp_path, (0.0, 1.0, 1.0), spec), name)
        # Rescored with ifeval, "X, Y" scores (0, 0, 0): a win, b win, c tie -> 2.5 / 3; the stored (0, 1, 1) would
        # give 0.5.
        assert out["win_rate"]["value"] == pytest.approx(2.5 / 3), spec
        assert out["win_rate"]["baseline_rewards"] == "rescored"
        assert out["paired_vs_baseline"]["reward"]["value"] == pytest.approx(2 / 3)


def test_baseline_on_other_prompts_is_refused(tmp_path: Path, prompts: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "samples.jsonl").write_text("".join(json.dumps({"id": k, "completion": "x"}) + "\n" for k in "ab"))
    with pytest.raises(DataError, match="not in the baseline"):
        _eval_against(tmp_path, prompts, base, "run")
    (base / "samples.jsonl").write_text("".join(json.dumps({"id": k, "completion": "x", "prompt": "Say hi."}) + "\n"
                                                for k in "abc"))
    with pytest.raises(DataError, match=r"samples\.jsonl:1.*differs from the evaluated prompt"):
        _eval_against(tmp_path, prompts, base, "run")


def test_kl_from_greedy_samples_is_refused(tmp_path: Path, prompts: Path) -> None:
    cfg = EvalConfig(model="tiny-random", prompts=str(prompts), reward="csr", reference_model="tiny-random",
                     output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="temperature 1"):
        evaluate(cfg)  # temperature 0 (greedy) is the default
    assert not (tmp_path / "run").exists()  # refused before anything was loaded or written


def test_cli_generates_resumes_and_estimates_kl(tmp_path: Path, prompts: Path) -> None:
    run = tmp_path / "run"
    args = ["eval", "--model", "tiny-random", "--prompts", str(prompts), "--reward", "csr",
            "--reference-model", "tiny-random", "--temperature", "1", "--output-dir", str(run),
            "--set", "max_new_tokens=8", "--set", "n_resamples=100"]
    assert main(args) == 0
    first = (run / "samples.jsonl").read_text()
    headline = json.loads((run / "eval.json").read_text())
    # Policy and reference are the same seeded model, so every log-ratio is zero.
    assert headline["kl"]["value"] == pytest.approx(0.0, abs=1e-4)
    assert (headline["kl"]["temperature"], headline["kl"]["top_p"]) == (1.0, 1.0)
    assert headline["compute"]["generated_tokens"] > 0
    assert main(args) == 0  # a rerun finds every prompt done and regenerates nothing
    assert [json.loads(x)["completion"] for x in (run / "samples.jsonl").read_text().splitlines()] == \
        [json.loads(x)["completion"] for x in first.splitlines()]
    row = summary_table([run])[0]
    assert row["constraint_accuracy"] is not None and row["kl"] is not None


def test_kl_scores_the_sampled_tokens_against_the_reference(tmp_path: Path, prompts: Path) -> None:
    """The policy's side of the KL is the log-prob recorded while sampling: it equals the teacher-forced log-prob of
    the same token ids, and only the reference is run again, on those token ids (EOS included)."""
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    cfg = EvalConfig(model="tiny-random", prompts=str(prompts), reward="csr", reference_model="tiny-random:2:32",
                     temperature=1.0, max_new_tokens=8, n_resamples=100, output_dir=str(tmp_path / "run"))
    kl = evaluate(cfg)["kl"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    texts = [r["prompt"] for r in rows]
    ids = [r["token_ids"] for r in rows]
    policy = [sum(x) for x in HFSampler(*load_model("tiny-random")).score_logprobs(texts, ids)]
    reference = [sum(x) for x in HFSampler(*load_model("tiny-random:2:32")).score_logprobs(texts, ids)]
    assert [r["logprob"] for r in rows] == pytest.approx(policy, abs=1e-3)
    assert kl["value"] == pytest.approx(sum(p - q for p, q in zip(policy, reference, strict=True)) / len(rows), abs=1e-3)
    assert kl["value"] > 0.01  # two different random models (near-uniform, so close)
    assert kl["scored"].startswith("the sampled token ids")


def test_kl_against_a_reference_with_another_vocabulary_rescores_the_texts(tmp_path: Path, prompts: Path) -> None:
    """Token ids mean nothing to a reference with another vocabulary: the KL falls back to re-tokenising the
    completion texts for both models instead of feeding the policy's ids to the reference."""
    from alignkit.models import load_model

    model, tokenizer = load_model("tiny-random:2:32")
    tokenizer.add_tokens(["<only-in-the-reference>"])
    model.resize_token_embeddings(len(tokenizer))
    ref_dir = tmp_path / "ref"
    model.save_pretrained(ref_dir)
    tokenizer.save_pretrained(ref_dir)
    cfg = EvalConfig(model="tiny-random", prompts=str(prompts), reward="csr", reference_model=str(ref_dir),
                     temperature=1.0, max_new_tokens=8, n_resamples=100, output_dir=str(tmp_path / "run"))
    kl = evaluate(cfg)["kl"]
    assert kl["scored"] == "the completion texts, re-tokenised"
    assert kl["n"] == 3


def _five_prompts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Tell me about {w}."}) + "\n"
                            for i, w in enumerate(("cats", "rain", "bread", "ships", "moss"))))
    return path


def test_a_forward_batch_smaller_than_the_call_refills_without_changing_samples(tmp_path: Path) -> None:
    """`max_batch_rows` below `batch_size`: prompts wait and take the places of rows that finished (continuous
    batching); the rows are those of a forward batch as large as the call, because seeds follow the call."""
    prompts = _five_prompts(tmp_path / "p.jsonl")

    def rows(out: str, **kw: object) -> list[dict]:
        evaluate(EvalConfig(model="tiny-random", prompts=str(prompts), reward="csr", temperature=1.0,
                            max_new_tokens=6, batch_size=5, n_resamples=50, output_dir=str(tmp_path / out), **kw))
        return [{k: r[k] for k in ("id", "completion", "token_ids", "finish_reason")}
                for r in map(json.loads, (tmp_path / out / "samples.jsonl").read_text().splitlines())]

    assert rows("narrow", max_batch_rows=2) == rows("wide")


def test_a_resumed_sampled_eval_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    prompts = _five_prompts(tmp_path / "p.jsonl")

    def cfg(out: str, **kw: object) -> EvalConfig:
        return EvalConfig(**{"model": "tiny-random", "prompts": str(prompts), "reward": "csr", "temperature": 1.0,
                             "max_new_tokens": 6, "batch_size": 2, "n_resamples": 50, "output_dir": str(out), **kw})

    full = tmp_path / "full"
    evaluate(cfg(full))
    whole = (full / "samples.jsonl").read_text().splitlines()
    # Interrupted after three rows (the second batch, p2 p3, half written), then resumed.
    part = tmp_path / "part"
    evaluate(cfg(part))
    (part / "samples.jsonl").write_text("\n".join(whole[:3]) + "\n")
    evaluate(cfg(part))
    resumed = (part / "samples.jsonl").read_text().splitlines()
    assert [json.loads(x)["completion"] for x in resumed] == [json.loads(x)["completion"] for x in whole]
    assert len({json.loads(x)["completion"] for x in whole}) > 1  # really sampled, not one repeated string

    # The same directory under other settings is refused, naming what differs.
    with pytest.raises(ConfigError, match=r"temperature: 1\.0 there, 0\.5 now"):
        evaluate(cfg(part, temperature=0.5))
    with pytest.raises(ConfigError, match="model: 'tiny-random' there, 'other-model' now"):
        evaluate(cfg(part, model="other-model"))
    with pytest.raises(ConfigError, match="seed"):
        evaluate(cfg(part, seed=1))
