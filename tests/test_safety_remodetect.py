"""ReMoDetect detector-training pieces (wave2_selfalign_merge.md §9): the worked loss, replay, gradient
directions, the triplet builder and the mixed-text splice."""

from __future__ import annotations

import re

import pytest
import torch

from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import DataError
from alignkit.safety.remodetect import mixed_text, remodetect_loss, triplet_records


def _t(x: float) -> torch.Tensor:
    return torch.tensor([x], dtype=torch.float64, requires_grad=True)


def test_worked_example_pairs_mean_and_replay() -> None:
    loss, parts = remodetect_loss(_t(2.0), _t(0.5), _t(-1.0))
    assert [parts["pair0"], parts["pair1"], parts["pair2"]] == pytest.approx([0.077932, 0.073587, 0.072682],
                                                                             abs=1e-6)
    assert float(loss.detach()) == pytest.approx(0.074734, abs=1e-6)
    total, p = remodetect_loss(_t(2.0), _t(0.5), _t(-1.0), replay=_t(0.5),
                               replay_orig=torch.tensor([0.3], dtype=torch.float64))
    assert p["replay"] == pytest.approx(0.0004) and float(total.detach()) == pytest.approx(0.075134, abs=1e-6)
    same = torch.tensor([0.3, -0.2], dtype=torch.float64)
    assert remodetect_loss(_t(2.0), _t(0.5), _t(-1.0), replay=same, replay_orig=same.clone())[1]["replay"] == 0.0


def test_gradient_pushes_llm_up_and_human_down() -> None:
    llm, mixed, human = _t(2.0), _t(0.5), _t(-1.0)
    remodetect_loss(llm, mixed, human)[0].backward()
    assert float(llm.grad) < 0 and float(human.grad) > 0


def test_triplets_by_name_and_filters() -> None:
    recs = triplet_records([{"human": "I wrote  this.", "mixed": "I penned this.", "llm": "Certainly! Here."},
                            {"pos": "a b", "perturb": "c d", "neg": "one"}])
    assert len(recs) == 1 and recs[0].completions == ["Certainly! Here.", "I penned this.", "I wrote this."]
    assert recs[0].scores == [2.0, 1.0, 0.0] and recs[0].prompt == ""
    with pytest.raises(DataError, match="llm, mixed, human"):
        triplet_records([{"completions": ["human text here", "x y", "llm text here"]}])


class Para:
    compute = Compute()

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def sample(self, prompts, n=1, max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        return [[Sample(self.reply, [1], 0.0, "stop")]]


def test_mixed_text_splices_by_index_and_keeps_the_original_on_failure() -> None:
    human = "One is first. Two is second. Three is third. Four is fourth."
    text, idx = mixed_text(Para("1. ONE\n2. TWO"), human, seed=0)
    assert len(idx) == 2 and idx == sorted(idx)
    sents = ["One is first.", "Two is second.", "Three is third.", "Four is fourth."]
    sents[idx[0]], sents[idx[1]] = "ONE", "TWO"
    assert text == " ".join(sents)
    same, none = mixed_text(Para("no numbers"), human, seed=0)
    assert same == human and none == []


class Scripted:
    """Answers a question with a fixed LLM-style text and paraphrases a numbered sentence list in capitals."""

    compute = Compute()

    def sample(self, prompts, n=1, max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        def reply(p: str) -> str:
            if not p.startswith("Paraphrase"):
                return "Certainly! Here is a clear answer."
            n = sum(bool(re.match(r"\d+\. ", line)) for line in p.splitlines())
            return "\n".join(f"{i}. REWRITTEN." for i in range(1, n + 1))
        return [[Sample(reply(str(p)), [1], 0.0, "stop")] for p in prompts]


def test_build_triplets_answers_questions_and_keeps_given_texts() -> None:
    from alignkit.safety.remodetect import build_triplets

    rows = [{"id": "a", "question": "Rent or buy a bike?", "human": "Rent it. Buying costs more. Ask a friend."},
            {"id": "b", "llm": "Given LLM text.", "mixed": "Given mixed.", "human": "Given human."}]
    out = build_triplets(Scripted(), rows, seed=0)
    assert out[0]["llm"] == "Certainly! Here is a clear answer." and out[0]["human"] == rows[0]["human"]
    assert out[0]["paraphrased"] and "REWRITTEN" in out[0]["mixed"]
    assert (out[1]["llm"], out[1]["mixed"], out[1]["paraphrased"]) == ("Given LLM text.", "Given mixed.", [])


@pytest.mark.parametrize(("row", "field"), [({"question": "q"}, "human"), ({"human": "h"}, "llm"),
                                            ({"human": "h", "llm": "l"}, "mixed")])
def test_build_triplets_names_the_bad_field(row: dict, field: str) -> None:
    from alignkit.safety.remodetect import build_triplets

    with pytest.raises(DataError) as e:
        build_triplets(None, [row], source="rows.jsonl")
    assert e.value.field == field and e.value.line == 1 and "rows.jsonl" in str(e.value)


def test_cli_remodetect_data_on_tiny_random(tmp_path) -> None:
    import json

    from alignkit.cli import main

    human = tmp_path / "human.jsonl"
    assert main(["safety", "data", "human", "--n", "2", "--out", str(human)]) == 0
    out = tmp_path / "t.jsonl"
    assert main(["safety", "remodetect-data", "--rows", str(human), "--model", "tiny-random", "--max-new-tokens",
                 "4", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all({"llm", "mixed", "human", "paraphrased"} <= set(r) for r in rows)
    assert main(["safety", "remodetect-data", "--rows", str(human), "--model", "tiny-random", "--out",
                 str(out)]) != 0  # an existing output is never overwritten without --overwrite
