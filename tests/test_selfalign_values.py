"""Moral direction (spec wave2_selfalign_merge.md §6), AlignScore/CTC aggregation (testtime_eval.md §B5) and
PROFILE factor influence (§B7), against the specs' worked numbers and definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alignkit.errors import ConfigError, DataError
from alignkit.evaluate.alignment_metrics import (
    aggregate,
    align_score,
    chunk_context,
    ctc_preservation,
    ctc_relevance,
    split_sentences,
)
from alignkit.evaluate.profile import factor_alignment, factor_influence, profile, read_factor_pairs
from alignkit.rewards.moral import MoralScore, fit_moral_direction, moral_actions

TOY = {"smile": [2.0, 0.5, 0.1], "help": [1.6, 0.9, -0.2], "greet": [1.8, -0.3, 0.4],
       "kill": [-2.1, 0.4, 0.0], "steal": [-1.5, -0.6, 0.3], "harm": [-1.9, 0.1, -0.5]}


def test_moral_direction_worked_example() -> None:
    d = fit_moral_direction(TOY, ["smile", "help", "greet"])
    assert d.direction.tolist() == pytest.approx([-0.994231, -0.093176, -0.053126], abs=1e-6)
    assert d.explained_variance_ratio == pytest.approx(0.917065, abs=1e-6)
    assert d.raw(np.array(list(TOY.values()))).tolist() == pytest.approx(
        [-2.040519, -1.664159, -1.783069, 2.050459, 1.531159, 1.906129], abs=1e-6)
    assert d.sign == -1.0 and d.scale == pytest.approx(2.050459, abs=1e-6)
    scores = d.score(np.array(list(TOY.values())))
    assert scores.tolist() == pytest.approx([0.995152, 0.811603, 0.869595, -1.0, -0.746740, -0.929611], abs=1e-6)
    assert float(d.score(np.array([0.9, 0.2, 0.0]))[0]) == pytest.approx(0.445558, abs=1e-6)


def test_moral_score_is_invariant_to_the_svd_sign_and_the_fit_order() -> None:
    d = fit_moral_direction(TOY, ["smile"])
    flipped = type(d)(d.mean, -d.direction, -d.sign, d.scale, d.explained_variance_ratio)
    X = np.array(list(TOY.values()))
    assert flipped.score(X).tolist() == pytest.approx(d.score(X).tolist())
    shuffled = fit_moral_direction(dict(reversed(list(TOY.items()))), ["smile"])
    assert shuffled.score(X).tolist() == pytest.approx(d.score(X).tolist())
    assert np.max(np.abs(d.score(X))) == pytest.approx(1.0) and np.all(np.abs(d.score(X)) <= 1.0)


def test_moral_reward_on_a_fake_encoder_rates_the_fit_verbs_in_order() -> None:
    acts = moral_actions()
    assert len(acts["positive"]) == 24 and len(acts["negative"]) == 24 and len(acts["neutral"]) == 16
    assert len(acts["frames"]) == 10
    good, bad = set(acts["positive"]), set(acts["negative"])

    def encode(texts: list[str]) -> np.ndarray:  # a 2-d "encoder" that knows the verbs
        rows = []
        for t in texts:
            words = set(t.lower().replace("?", "").split())
            rows.append([len(words & good) - len(words & bad), 0.1 * len(words)])
        return np.array(rows, dtype=float)

    reward = MoralScore(encode)
    res = reward(["", "", ""], ["smile", "kill", "eat"])
    assert res.scores[0] > res.scores[2] > res.scores[1]
    assert all(-1.0 <= s <= 1.0 for s in res.scores)


def test_alignscore_chunks_by_sentence_count_and_takes_mean_of_max() -> None:
    words = " ".join(["w"] * 100)
    context = " ".join(f"{words} s{i}." for i in range(8))  # 808 words, 8 sentences -> 3 chunks of 2 sentences
    chunks = chunk_context(context)
    assert len(chunks) == 4 and all(c.count(".") == 2 for c in chunks)  # 8 // 3 = 2 per chunk: 4 chunks
    assert split_sentences("A cat sat. It slept! Why?") == ["A cat sat.", "It slept!", "Why?"]

    def align(pairs: list[tuple[str, str]]) -> list[float]:
        return [0.9 if "s1." in ctx and "one" in claim else 0.2 if "two" in claim else 0.4 for ctx, claim in pairs]

    out = align_score(context, "Claim one. Claim two.", align)
    assert out["per_sentence"] == [0.9, 0.2] and out["score"] == pytest.approx(0.55)
    assert out["calls"] == 8  # chunks x claim sentences


class YesNo:
    """log P(answer | prompt): 'Yes' is likelier when the claim's word occurs in the context."""

    def score_logprobs(self, prompts, completions):
        def lp(p: str, c: str) -> float:
            ctx, claim = p.split("Claim: ")
            supported = claim.split()[0] in ctx
            return -0.1 if (c == "Yes") == supported else -2.3
        return [[lp(p, c)] for p, c in zip(prompts, completions, strict=True)]


def test_lm_judge_alignment_is_the_normalised_yes_probability() -> None:
    from alignkit.evaluate.alignment_metrics import LMJudgeAlignment

    f = LMJudgeAlignment(YesNo())
    got = f([("Context with cats.", "cats purr"), ("Context with cats.", "dogs bark")])
    assert got == pytest.approx([1 / (1 + np.exp(-2.2)), 1 / (1 + np.exp(2.2))])  # 0.900249, 0.099751


def test_cli_alignscore_with_a_causal_lm_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alignkit.cli import main

    data = tmp_path / "claims.jsonl"
    data.write_text(json.dumps({"context": "The sky is blue.", "claim": "The sky is blue."}) + "\n")
    assert main(["values", "alignscore", str(data), "--judge-model", "tiny-random"]) == 0
    out = capsys.readouterr().out
    assert "AlignScore 0." in out and "over 1 claims" in out
    with pytest.raises(SystemExit):  # one of --alignment-model / --judge-model is required
        main(["values", "alignscore", str(data)])


def test_ctc_aggregations() -> None:
    toks = [("the", 1.0), ("cat", 0.5), ("sat", 0.0)]
    assert aggregate(toks) == pytest.approx(0.5)
    assert aggregate(toks, "sum") == pytest.approx(1.5)
    assert aggregate(toks, remove_stopwords=True) == pytest.approx(0.25)

    def align(a: str, b: str) -> list[tuple[str, float]]:
        return [(t, 1.0 if t in b.split() else 0.0) for t in a.split()]

    # a = mean(align(y→x)) = 2/3, b = mean(align(x→y)) = 2/4; harmonic mean 2ab/(a+b) = 4/7
    assert ctc_preservation("a b c", "a b d e", align) == pytest.approx(4 / 7)
    # relevance = consistency (2/3) × mean over references of reference coverage by y: (1 + 0.5)/2
    assert ctc_relevance("a b c", "a b d", ["a b", "c z"], align) == pytest.approx(2 / 3 * 0.75)


def test_profile_tau_counts_concordant_minus_discordant_over_untied_pairs() -> None:
    out = factor_influence([10, 12, 5, 7, 3], [8, 12, 9, 2, 1])  # +, tie, −, +, +
    assert (out["concordant"], out["discordant"], out["ties"]) == (3, 1, 1)
    assert out["tau"] == pytest.approx(0.5)
    assert out["low"] <= 0.5 <= out["high"]


def test_profile_from_a_factor_file_and_factor_level_alignment(tmp_path: Path) -> None:
    rows = []
    for i in range(6):  # humans prefer more facts; the model-as-generator prefers length
        rows.append({"source": "human", "chosen_factors": {"length": 10 - i % 2 * 20, "facts": 5, "fluency": 3},
                     "rejected_factors": {"length": 0, "facts": 1, "fluency": 3 + (i % 3 == 0)}})
        rows.append({"source": "model", "chosen_factors": {"length": 50, "facts": 1 + i % 2 * 4, "fluency": 3},
                     "rejected_factors": {"length": 10, "facts": 3, "fluency": 2}})
    p = tmp_path / "f.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    groups = read_factor_pairs(p)
    human = {f: v["tau"] for f, v in profile(groups["human"]).items()}
    model = {f: v["tau"] for f, v in profile(groups["model"]).items()}
    assert human == {"facts": 1.0, "fluency": -1.0, "length": 0.0}  # fluency: 2 untied pairs, both preferred lower
    assert model == {"facts": 0.0, "fluency": 1.0, "length": 1.0}
    al = factor_alignment(human, model, top_k=1)
    assert al["factors"] == ["facts", "fluency", "length"] and al["top1_overlap"] == 0.0
    assert al["kendall_tau"] == pytest.approx(-2 / 6 ** 0.5)  # τ-b: 2 discordant pairs, one tie in the model's vector
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen_factors": {"length": "long"}, "rejected_factors": {}}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: field 'chosen_factors'"):
        read_factor_pairs(bad)


def test_cli_values_profile_and_moral_vector_on_tiny_random(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from alignkit.cli import main
    from alignkit.decode.steer import SteeringVector

    p = tmp_path / "f.jsonl"
    p.write_text("\n".join(json.dumps({"source": s, "chosen_factors": {"length": 5 + i, "facts": 2},
                                       "rejected_factors": {"length": 3, "facts": 1 + (s == "model") * 2}})
                           for s in ("human", "model") for i in range(3)) + "\n")
    assert main(["values", "profile", str(p)]) == 0
    out = capsys.readouterr().out
    assert "[human] 3 pairs" in out and "human vs model" in out
    vec_path = tmp_path / "moral.safetensors"
    assert main(["values", "moral-vector", "--model", "tiny-random", "--layers", "1", "--out", str(vec_path)]) == 0
    vec = SteeringVector.load(vec_path)
    assert vec.layers == [1] and float(vec.vectors[1].norm()) == pytest.approx(1.0, abs=1e-5)
    assert main(["values", "moral-vector", "--model", "tiny-random", "--layers", "1", "--out", str(vec_path)]) == 2


def test_moral_reward_can_encode_with_a_causal_lms_hidden_states() -> None:
    """No sentence encoder ships: `moral:tiny-random` (built-in names imply `lm`) embeds with the causal LM's
    mean-pooled last hidden states (Guide-Align's `hidden_state_embedder`), fitted on the shipped verbs."""
    from alignkit.decode.guide import hidden_state_embedder
    from alignkit.models import load_model
    from alignkit.rewards.moral import causal_lm_encoder, frame_average, moral_reward

    reward = moral_reward("tiny-random,frames")
    model, tok = load_model("tiny-random")
    encode = causal_lm_encoder(model, tok)
    texts = ["smile", "kill people"]
    assert encode(texts) == pytest.approx(hidden_state_embedder(model, tok)(texts).numpy(), abs=1e-6)
    acts = moral_actions()
    fit = frame_average(encode, acts["positive"] + acts["negative"] + acts["neutral"], acts["frames"])
    s = reward.direction.score(fit)
    assert np.max(np.abs(s)) == pytest.approx(1.0) and np.all(np.abs(s) <= 1.0)
    assert np.mean(s[:24]) > np.mean(s[24:48])  # the sign points to the positive verbs
    res = reward(["", ""], texts)
    assert res.scores == pytest.approx(reward.direction.score(frame_average(encode, texts, acts["frames"])).tolist())
    with pytest.raises(Exception, match="'prompt', 'frames' and 'lm'"):
        moral_reward("tiny-random,bogus")


def test_embedding_aligner_scores_each_token_by_its_best_match() -> None:
    from alignkit.evaluate.alignment_metrics import EmbeddingAligner, ctc_score
    from alignkit.models import load_model

    align = EmbeddingAligner(*load_model("tiny-random"))
    same = align("the cat sat on the mat", "the cat sat on the mat")
    assert [t for t, _ in same] and all(s == pytest.approx(1.0, abs=1e-5) for _, s in same)  # each token matches itself
    other = align("the cat sat on the mat", "zebra quantum")
    assert all(0.0 <= s <= 1.0 for _, s in other) and sum(s for _, s in other) < sum(s for _, s in same)
    est, per = ctc_score([{"output": "a b c", "input": "a b c"}], "consistency", align)
    assert per == [pytest.approx(1.0, abs=1e-5)]
    with pytest.raises(ConfigError, match="unknown CTC aspect"):
        ctc_score([], "fluency", align)


def test_ctc_score_follows_each_aspect_formula() -> None:
    from alignkit.evaluate.alignment_metrics import ctc_score

    def align(a: str, b: str) -> list[tuple[str, float]]:  # a token is supported iff it occurs in b
        return [(t, 1.0 if t in b.split() else 0.0) for t in a.split()]

    rows = [{"output": "red car fast", "input": "red car", "references": ["car red blue"], "fact": "car",
             "history": "red"}]
    assert ctc_score(rows, "consistency", align)[1] == [pytest.approx(2 / 3)]
    assert ctc_score(rows, "relevance", align)[1] == [pytest.approx(2 / 3 * 2 / 3)]
    assert ctc_score(rows, "preservation", align)[1] == [pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))]
    assert ctc_score(rows, "engagingness", align)[1] == [pytest.approx(2.0)]  # a sum: red + car
    assert ctc_score(rows, "groundedness", align)[1] == [pytest.approx(1 / 3)]


def test_cli_ctc_on_tiny_random(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alignkit.cli import main

    data = tmp_path / "s.jsonl"
    data.write_text(json.dumps({"output": "The sky is blue.", "input": "The sky is blue."}) + "\n")
    assert main(["values", "ctc", str(data), "--aspect", "consistency", "--aligner-model", "tiny-random"]) == 0
    assert "CTC consistency 1.0000" in capsys.readouterr().out
    data.write_text(json.dumps({"output": "x"}) + "\n")
    assert main(["values", "ctc", str(data), "--aspect", "consistency", "--aligner-model", "tiny-random"]) == 2
    err = capsys.readouterr().err
    assert "s.jsonl:1" in err and "input" in err
