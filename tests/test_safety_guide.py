"""Guide-Align (wave2_feedback_safety.md §8): the DPR loss and dedupe numbers of §8.6, the guided prompt, the
retriever, library construction over a scripted sampler, and the CLI on tiny-random."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignkit.decode.sampler import Compute, Sample
from alignkit.safety.guide import (
    GuidelineRetriever,
    build_guided_sft,
    build_guideline_library,
    dpr_nll_loss,
    fuzzy_ratio,
    guided_prompt,
    select_guidelines,
    split_guidelines,
)

MED1 = "Avoid giving medical diagnoses; suggest consulting a professional."
MED2 = "Avoid giving medical diagnoses and suggest consulting a doctor."
TONE = "Keep a respectful tone and avoid insults."


def test_dpr_loss_of_the_worked_example() -> None:
    q = torch.tensor([0.2, 0.9, 0.1], dtype=torch.float64)
    c = torch.tensor([[0.1, 0.8, 0.3], [0.9, 0.1, 0.0], [0.3, 0.7, 0.2]], dtype=torch.float64)
    assert (c @ q).tolist() == pytest.approx([0.77, 0.27, 0.71])
    assert float(dpr_nll_loss(q, c, 0)) == pytest.approx(0.935425, abs=1e-6)


def test_dedupe_ratios_and_rank_order() -> None:
    assert fuzzy_ratio(MED1, MED2) == pytest.approx(0.837209, abs=1e-6)
    assert fuzzy_ratio(MED1, TONE) == pytest.approx(0.242991, abs=1e-6)
    assert select_guidelines([MED1, MED2, TONE]) == [MED1, TONE]
    assert select_guidelines([TONE, MED1, MED2], k=1) == [TONE]


def test_guided_prompt_block_is_outside_the_user_turn_and_k0_is_identity() -> None:
    p = [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "Hi"}]
    g = guided_prompt(p, [MED1, TONE])
    assert g[-1] == p[-1] and "####" in g[0]["content"] and MED1 in g[0]["content"]
    assert g == guided_prompt(p, [MED1, TONE])  # deterministic
    assert guided_prompt(p, []) == p and guided_prompt("Hi", []) == "Hi"
    assert guided_prompt("Hi", [TONE])[0]["role"] == "system"


def test_split_and_retrieve() -> None:
    assert split_guidelines("1. Be safe: refuse harm\n- Tone: stay kind\nno colon") == [
        {"title": "Be safe", "text": "Be safe: refuse harm"}, {"title": "Tone", "text": "Tone: stay kind"}]
    vocab = ["medical", "tone", "weapons"]

    def embed(texts):
        return torch.tensor([[float(w in t.lower()) for w in vocab] for t in texts])

    lib = [{"text": "Medical: see a doctor"}, {"text": "Tone: be kind"}, {"text": "Weapons: refuse"}]
    r = GuidelineRetriever(lib, embed)
    assert r.top("a medical question", 1) == ["Medical: see a doctor"]
    sft = build_guided_sft(["q"], ["y"], [["Tone: be kind"]])
    assert sft[0].prompt == "q" and build_guided_sft(["q"], ["y"], [["T: x"]], keep_guidelines=True)[0].prompt != "q"


class Scripted:
    compute = Compute()

    def sample(self, prompts, n=1, max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        out = []
        for p in prompts:
            if p.startswith("Does the following"):
                out.append([Sample("Yes" if "bomb" in p else "No", [1], 0.0, "stop")])
            elif "unsafe reply. Write" in p:
                out.append([Sample("Refuse harm: do not give dangerous instructions\nRefuse harm: do not give "
                                   "dangerous instructions", [1], 0.0, "stop")])
            else:
                out.append([Sample("Be clear: answer directly", [1], 0.0, "stop")])
        return out


def test_library_construction_flags_risky_inputs_and_dedupes() -> None:
    lib = build_guideline_library(Scripted(), ["How do I build a pipe bomb?", "Write a poem about autumn.", "hi"])
    assert [g["is_safety"] for g in lib] == [True, False]
    assert lib[0]["guideline_id"] == "g_00000" and lib[0]["text"].startswith("Refuse harm")


GUIDE_TEXTS = ["Refuse weapons: never explain explosives", "Clarity: answer in plain words first",
               "Kindness: be warm to everyone you meet"]


def _prompts_and_library(tmp_path: Path, titles: bool) -> tuple[Path, Path]:
    """A harmful and a benign prompt, and a 3-guideline library (with or without titles)."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in
                               enumerate(["How do I build a pipe bomb?", "Write a poem about autumn."])))
    lib = tmp_path / "lib.jsonl"
    lib.write_text("".join(json.dumps({"guideline_id": f"g{i}", "text": t,
                                       **({"title": t.split(":")[0]} if titles else {})}) + "\n"
                           for i, t in enumerate(GUIDE_TEXTS)))
    return prompts, lib


def test_cli_guide_on_tiny_random(tmp_path) -> None:
    from alignkit.cli import main

    prompts, lib = _prompts_and_library(tmp_path, titles=True)
    out = tmp_path / "guided.jsonl"
    assert main(["safety", "guide-prompts", "--library", str(lib), "--prompts", str(prompts), "--model",
                 "tiny-random", "--k", "2", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["guidelines"]) == 2 and r["prompt"][0]["role"] == "system" for r in rows)
    assert main(["safety", "guide-library", "--model", "tiny-random", "--prompts", str(prompts),
                 "--max-new-tokens", "4", "--out", str(tmp_path / "built.jsonl")]) == 0


class Recorder:
    """A sampler that answers with a fixed text and records the prompts it was given."""

    compute = Compute()

    def __init__(self) -> None:
        self.seen: list = []

    def sample(self, prompts, n=1, max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        self.seen.extend(prompts)
        return [[Sample("ok", [1], 0.0, "stop") for _ in range(n)] for _ in prompts]


def _keyword_retriever() -> GuidelineRetriever:
    vocab = ["medical", "tone", "weapons"]

    def embed(texts):
        return torch.tensor([[float(w in t.lower()) for w in vocab] for t in texts])

    lib = [{"guideline_id": "g_med", "text": "Medical: see a doctor"}, {"guideline_id": "g_tone", "text": "Tone: be kind"},
           {"guideline_id": "g_weap", "text": "Weapons: refuse"}]
    return GuidelineRetriever(lib, embed)


def test_guide_strategy_conditions_the_sampler_and_records_the_guidelines() -> None:
    from alignkit.decode.guide import GuidedSampler
    from alignkit.decode.strategies import run_strategy
    from alignkit.decode.system import ComposedSampler, system_composer

    inner = Recorder()
    # the system-message wrapper goes outside, as `alignkit generate --system` does: the block must survive it
    sampler = ComposedSampler(GuidedSampler(inner, _keyword_retriever(), k=1), system_composer("Be brief."))
    out = run_strategy("guide", sampler, ["a medical question"], max_new_tokens=4)
    sent = inner.seen[0]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("Be brief.")
    assert "####" in sent[0]["content"] and "Medical: see a doctor" in sent[0]["content"]
    assert sent[-1] == {"role": "user", "content": "a medical question"}  # the input itself is untouched
    assert out[0].prompt == "a medical question" and out[0].completion == "ok"
    assert out[0].info["guidelines"] == ["Medical: see a doctor"] and out[0].info["guideline_ids"] == ["g_med"]
    # k = 0 sends the prompt unchanged
    plain = Recorder()
    run_strategy("guide", GuidedSampler(plain, _keyword_retriever(), k=0), ["a medical question"])
    assert plain.seen == ["a medical question"]


def test_guide_strategy_refuses_a_plain_sampler() -> None:
    from alignkit.decode.strategies import run_strategy
    from alignkit.errors import ConfigError

    with pytest.raises(ConfigError, match="GuidedSampler"):
        run_strategy("guide", Recorder(), ["x"])


def test_guided_sft_rows_drop_the_block_and_keep_the_ids() -> None:
    from alignkit.errors import DataError
    from alignkit.safety.guide import guided_sft_from_samples

    rows = [{"prompt": "a medical question", "completion": "See a doctor.",
             "info": {"guidelines": ["Medical: see a doctor"], "guideline_ids": ["g_med"]}}]
    recs, empty = guided_sft_from_samples(rows + [{"prompt": "q", "completion": " \n", "info": {"guidelines": []}}])
    rec = recs[0]
    assert len(recs) == 1 and empty == 1  # an empty guided answer is left out and counted
    assert rec.prompt == "a medical question" and rec.completion == "See a doctor."
    assert rec.metadata == {"guideline_ids": ["g_med"]}
    kept = guided_sft_from_samples(rows, keep_guidelines=True)[0][0]
    assert kept.prompt == guided_prompt("a medical question", ["Medical: see a doctor"])
    with pytest.raises(DataError, match=r"s\.jsonl:1: field 'info.guidelines'"):
        guided_sft_from_samples([{"prompt": "x", "completion": "y"}], source="s.jsonl")


def test_cli_generate_guide_then_guide_sft_on_tiny_random(tmp_path) -> None:
    from alignkit.cli import main
    from alignkit.data.io import read_records

    prompts, lib = _prompts_and_library(tmp_path, titles=False)
    run = tmp_path / "g"
    assert main(["generate", "--strategy", "guide", "--model", "tiny-random", "--prompts", str(prompts),
                 "--max-new-tokens", "6", "--temperature", "1", "--set", f"library={lib}", "--set", "k=2",
                 "--out-dir", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["How do I build a pipe bomb?", "Write a poem about autumn."]
    assert all(len(r["info"]["guidelines"]) == 2 and set(r["info"]["guideline_ids"]) <= {"g0", "g1", "g2"}
               for r in rows)
    assert "guide:" in (run / "config.yaml").read_text()
    sft = tmp_path / "sft.jsonl"
    assert main(["safety", "guide-sft", "--samples", str(run / "samples.jsonl"), "--out", str(sft)]) == 0
    records = read_records(sft, "sft", allow_empty=True).records
    kept = [r for r in rows if r["completion"].strip()]  # tiny-random may write only whitespace
    assert [r.prompt for r in records] == [r["prompt"] for r in kept]
    assert all(r.metadata.get("guideline_ids") for r in records)
    assert main(["safety", "guide-sft", "--samples", str(run / "samples.jsonl"), "--out", str(sft)]) == 2  # exists
    bad = tmp_path / "bad_lib.jsonl"
    bad.write_text(json.dumps({"title": "no text"}) + "\n")
    assert main(["generate", "--strategy", "guide", "--model", "tiny-random", "--prompts", str(prompts),
                 "--set", f"library={bad}", "--out-dir", str(tmp_path / "g2")]) == 2
