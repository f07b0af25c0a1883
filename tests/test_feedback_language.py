"""Learning from language feedback (Align Anything LLF, spec wave2_feedback_safety.md §2): the feedback-model SFT
data, the pair builder's orientation and filters with a scripted sampler, the §2.4 worked numbers through the
existing objectives, and `alignkit data build --from language-feedback` on tiny-random."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.data.build import SamplingSettings, items_from_prompts
from alignkit.data.build.language_feedback import (
    LanguageFeedbackBuilder,
    feedback_sft_records,
    refine_prompt,
)
from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import DataError
from alignkit.objectives import get_objective
from alignkit.objectives.base import LogProbs
from alignkit.rewards.base import FunctionReward


def test_worked_numbers_use_existing_objectives() -> None:
    probs = [0.9, 0.5, 0.7, 0.8]
    lp = LogProbs(policy=torch.tensor([[sum(map(math.log, probs))]], dtype=torch.float64),
                  lengths=torch.tensor([[4.0]], dtype=torch.float64))
    assert float(get_objective("sft")(lp)[0]) == pytest.approx(0.344582, abs=1e-6)
    pair = LogProbs(policy=torch.tensor([[-42.0, -40.0]], dtype=torch.float64),
                    lengths=torch.tensor([[1.0, 1.0]], dtype=torch.float64),
                    reference=torch.tensor([[-47.0, -41.0]], dtype=torch.float64))
    assert float(get_objective("dpo")(pair, beta=0.1)[0]) == pytest.approx(0.513015, abs=1e-6)


class Scripted:
    """Answers, critiques and refinements from the last user message: deterministic and seed-independent."""

    def __init__(self, refine=lambda y, c: y + " (fixed)", finish="stop") -> None:
        self.refine, self.finish, self.compute, self.seen = refine, finish, Compute(), []

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        out = []
        for p in prompts:
            self.seen.append(p)
            last = p if isinstance(p, str) else p[-1]["content"]
            if last.startswith("Here is feedback"):
                text, fin = self.refine(p[-2]["content"], last), self.finish
            elif "[Response]" in last:
                text, fin = "Too short; add a reason.", "stop"
            else:
                text, fin = f"Answer to {last}", "stop"
            out.append([Sample(text, [], 0.0, fin) for _ in range(n)])
        return out


def test_pairs_orientation_and_refine_conversation() -> None:
    policy = Scripted()
    b = LanguageFeedbackBuilder(policy, policy, SamplingSettings(n=1))
    (out,) = b.build(items_from_prompts(["Why is the sky blue?"]))
    (rec,) = out.records
    assert rec.rejected == "Answer to Why is the sky blue?"
    assert rec.chosen == "Answer to Why is the sky blue? (fixed)"  # chosen is always the refinement
    assert rec.metadata["feedback"] == "Too short; add a reason." and rec.metadata["round"] == 0
    t_ref = policy.seen[-1]
    assert [m["role"] for m in t_ref] == ["user", "assistant", "user"]
    assert t_ref[1]["content"] == rec.rejected and "Too short; add a reason." in t_ref[2]["content"]
    assert refine_prompt([{"role": "system", "content": "S"}, {"role": "user", "content": "x"}], "y", "c")[0] == {
        "role": "system", "content": "S"}


def test_filters() -> None:
    items = items_from_prompts(["q"])
    same = Scripted(refine=lambda y, c: y)
    assert LanguageFeedbackBuilder(same, same).build(items)[0].dropped == "unchanged"
    cut = Scripted(finish="length")
    assert LanguageFeedbackBuilder(cut, cut).build(items)[0].dropped == "refinement_truncated"
    shorter = FunctionReward(lambda ps, cs: [-float(len(c)) for c in cs], name="short")
    p = Scripted()
    assert LanguageFeedbackBuilder(p, p, reward=shorter).build(items)[0].dropped == "reward_prefers_original"


def test_feedback_sft_records_and_errors() -> None:
    (r,) = feedback_sft_records([{"prompt": "x", "response": "y", "feedback": "c"}])
    assert "x" in r.prompt[0]["content"] and "y" in r.prompt[0]["content"] and r.completion == "c"
    with pytest.raises(DataError, match=r"crit.jsonl:1.*feedback"):
        feedback_sft_records([{"prompt": "x", "response": "y"}], source="crit.jsonl")


def test_cli_language_feedback_tiny(tmp_path) -> None:
    crit = tmp_path / "crit.jsonl"
    crit.write_text(json.dumps({"prompt": "x", "response": "y", "feedback": "Be specific."}) + "\n")
    fm = tmp_path / "fm.jsonl"
    assert main(["data", "build", "--from", "feedback-model", "--critiques", str(crit), "--out", str(fm)]) == 0
    assert json.loads(fm.read_text())["completion"] == "Be specific."
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Name a colour {i}."}) + "\n" for i in range(2)))
    out = tmp_path / "pairs.jsonl"
    report = tmp_path / "report.json"
    assert main(["data", "build", "--from", "language-feedback", "--policy", "tiny-random", "--feedback-model",
                 "tiny-random", "--prompts", str(prompts), "--max-new-tokens", "4", "--critique-max-new-tokens",
                 "4", "--out", str(out), "--report", str(report)]) == 0
    rep = json.loads(report.read_text())
    assert rep["processed"] == 2
    # tiny-random writes noise; every prompt either gives a pair or a counted drop reason
    assert rep["records_written"] + sum(rep["dropped"].values()) == 2


def test_reward_filter_gets_each_items_constraints() -> None:
    """`--reward csr` needs the prompt's constraints as reward context (it raised before: no constraints column)."""
    from alignkit.data.records import PromptExample
    from alignkit.rewards.registry import load_reward

    items = items_from_prompts([PromptExample("Say hi. Avoid commas.", constraints=[{"id": "punctuation:no_comma", "kwargs": {}}])])
    fixes = Scripted(refine=lambda y, c: y.replace(",", "").replace(".", "") + " ok")
    (kept,) = LanguageFeedbackBuilder(fixes, fixes, reward=load_reward("csr")).build(items)
    assert kept.dropped is None and "," not in kept.records[0].chosen
    adds = Scripted(refine=lambda y, c: y + ", then a comma")
    (drop,) = LanguageFeedbackBuilder(adds, adds, reward=load_reward("csr")).build(items)
    assert drop.dropped == "reward_prefers_original"
