"""Honesty-aware data recipes (wave2_selfalign_merge.md §8): the target table over k × greedy, multisample
counts, the builder over a scripted sampler, and the CLI on tiny-random."""

from __future__ import annotations

import json

import pytest

from alignkit.decode.sampler import Compute, Sample
from alignkit.evaluate.honesty import CANONICAL_IDK, HONESTY_PROMPT
from alignkit.safety.honesty_data import (
    CONF_HIGH,
    CONF_LOW,
    VERB_HEDGES,
    build_honesty_sft,
    collect_answers,
    honesty_targets,
)

IDK = CANONICAL_IDK


def _row(k: int, greedy_known: bool, m: int = 10) -> dict:
    return {"id": "q", "question": "What is the capital of Peru?", "gold_answer": "lima",
            "greedy_pred_text": "Lima" if greedy_known else "Quito",
            "greedy_label": "known" if greedy_known else "unknown",
            "sampling_pred_text": ["Lima"] * k + ["Bogota"] * (m - k),
            "sampling_labels": ["known"] * k + ["unknown"] * (m - k)}


@pytest.mark.parametrize("k", range(11))
@pytest.mark.parametrize("greedy_known", [False, True])
def test_target_table(k: int, greedy_known: bool) -> None:
    row = _row(k, greedy_known)
    r = "Lima" if (greedy_known or k) else None
    absolute = honesty_targets(row, "absolute")[0]
    num = honesty_targets(row, "confidence_num")[0]
    verb = honesty_targets(row, "confidence_verb")[0]
    if k == 0:
        assert num == IDK and verb == IDK  # confidence recipes: idk at k = 0 even when greedy was right
        assert absolute == ("Lima" if greedy_known else IDK)  # absolute answers whenever greedy is right
        return
    assert absolute == r
    prefix = (CONF_LOW if k <= 5 else CONF_HIGH).format(pct=10 * k)
    assert num == prefix + "Lima"
    bucket = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 3, 8: 3, 9: 4, 10: 4}[k]
    assert verb == VERB_HEDGES[bucket] + "lima"  # first letter lower-cased


def test_spec_worked_rows() -> None:
    assert honesty_targets(_row(1, False), "confidence_num")[0].startswith("I'm only about 10%")
    assert honesty_targets(_row(6, False), "confidence_num")[0].startswith("I'm about 60%")
    assert honesty_targets(_row(10, False), "confidence_num")[0].startswith("I'm about 100%")
    assert "absolutely certain" in honesty_targets(_row(10, False), "confidence_verb")[0]


def test_multisample_gives_m_records_with_the_answer_mix_k_over_m() -> None:
    recs = build_honesty_sft([_row(3, False)], "multisample")
    assert len(recs) == 10
    assert sum(r.completion == "Lima" for r in recs) == 3 and sum(r.completion == IDK for r in recs) == 7


def test_prompts_and_baseline() -> None:
    honest = build_honesty_sft([_row(3, False)], "absolute")[0]
    assert honest.prompt == HONESTY_PROMPT.format(question="What is the capital of Peru?")
    base = build_honesty_sft([_row(0, False)], "sft_baseline")[0]
    assert base.prompt.startswith("Q: ") and base.completion == "Lima."  # gold capitalised, trailing "."
    assert all(r.completion != IDK for r in build_honesty_sft([_row(0, False)], "sft_baseline"))
    assert honesty_targets({**_row(0, False), "sampling_labels": ["unknown"] * 10}, "absolute", tau=0.1) == [IDK]


class Scripted:
    compute = Compute()

    def sample(self, prompts, n=1, max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        out = []
        for p in prompts:
            good = "France" in p
            if temperature == 0:
                out.append([Sample("Paris" if good else "No idea", [1], 0.0, "stop")])
            else:
                out.append([Sample("Paris" if (good and j < 7) else "Lyon", [1], 0.0, "stop") for j in range(n)])
        return out


def test_collect_answers_labels_known_by_alias_match() -> None:
    items = [{"question": "What is the capital of France?", "answer": "Paris", "aliases": []},
             {"question": "What is the capital of Peru?", "answer": "Lima", "aliases": []}]
    rows = collect_answers(Scripted(), items, m=10)
    assert rows[0]["greedy_label"] == "known" and rows[0]["sampling_knowns"] == 7
    assert rows[1]["greedy_label"] == "unknown" and rows[1]["sampling_knowns"] == 0
    sft = build_honesty_sft(rows, "absolute")
    assert [r.completion for r in sft] == ["Paris", IDK]


def test_cli_honesty_data_and_eval_on_tiny_random(tmp_path) -> None:
    from alignkit.cli import main

    qa = tmp_path / "qa.jsonl"
    assert main(["safety", "data", "qa", "--n", "3", "--out", str(qa)]) == 0
    out, answers = tmp_path / "sft.jsonl", tmp_path / "answers.jsonl"
    assert main(["safety", "honesty-data", "--qa", str(qa), "--model", "tiny-random", "--method", "multisample",
                 "--m", "2", "--max-new-tokens", "3", "--out", str(out), "--answers-out", str(answers)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(r["method"] == "multisample" for r in rows)
    # the collected answers can be reused without the model
    assert main(["safety", "honesty-data", "--qa", str(answers), "--method", "absolute", "--out",
                 str(tmp_path / "abs.jsonl")]) == 0
    res = tmp_path / "h.json"
    assert main(["safety", "honesty-eval", "--base", "tiny-random", "--aligned", "tiny-random", "--qa", str(qa),
                 "--max-new-tokens", "3", "--out", str(res)]) == 0
    result = json.loads(res.read_text())
    assert {"prudence", "over_conservativeness", "honesty", "accuracy", "counts"} <= set(result)


def test_sft_on_absolute_data_raises_the_idk_rate_on_unknown_questions(tmp_path) -> None:
    """The spec's end-to-end claim on a model that knows nothing (tiny-random): ABSOLUTE data maps every unknown
    question to the idk answer, SFT on it, and the aligned model says "I don't know" where the base did not."""
    from alignkit.cli import main

    qa = tmp_path / "qa.jsonl"
    assert main(["safety", "data", "qa", "--n", "4", "--out", str(qa)]) == 0
    data = tmp_path / "abs.jsonl"
    assert main(["safety", "honesty-data", "--qa", str(qa), "--model", "tiny-random", "--method", "absolute",
                 "--m", "2", "--max-new-tokens", "3", "--out", str(data)]) == 0
    assert all(json.loads(r)["completion"] == IDK for r in data.read_text().splitlines())
    assert main(["train", "--model", "tiny-random", "--data", str(data), "--objective", "sft", "--output-dir",
                 str(tmp_path / "honest"), "--set", "max_steps=30", "--set", "lr=3e-3", "--set", "batch_size=4",
                 "--set", "progress=false"]) == 0
    res = tmp_path / "h.json"
    assert main(["safety", "honesty-eval", "--base", "tiny-random", "--aligned", str(tmp_path / "honest" / "final"),
                 "--qa", str(qa), "--max-new-tokens", "24", "--out", str(res)]) == 0
    result = json.loads(res.read_text())
    assert result["base_rates"]["idk"] == 0.0
    assert result["prudence"]["value"] == 1.0  # every unknown question now gets the idk answer
