"""Learning tests: each data kind trains through the one engine on the tiny model, and the objective's own metric
improves over a few seeded steps (every step sees the whole small data set, so steps are comparable).

unpaired → kto (reward margin grows), listwise → lipo_lambda (LiPO-λ loss falls), judged → cut (CUT loss falls),
distill → dckd with a teacher that is the tiny model trained briefly by SFT (KL to the teacher falls).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.data.io import sample_path
from alignkit.train.config import TrainConfig
from alignkit.train.engine import train

COMMON = dict(model="tiny-random", lr=5e-3, progress=False, torch_threads=1, seed=0, scheduler="constant",
              shuffle=False, max_grad_norm=0.0)


def run(tmp_path: Path, name: str, **kw) -> list[dict]:
    cfg = TrainConfig(output_dir=str(tmp_path / name), **{**COMMON, **kw})
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]


def first_last(rows: list[dict], key: str, n: int = 3) -> tuple[float, float]:
    vals = [r[key] for r in rows]
    return sum(vals[:n]) / n, sum(vals[-n:]) / n


def test_unpaired_kto_widens_the_reward_margin(tmp_path):
    rows = run(tmp_path, "kto", data=str(sample_path("unpaired")), objective="kto", batch_size=8, max_steps=12)
    assert rows[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-6)  # policy = reference at step 1
    start, end = first_last(rows, "rewards/margin")
    assert end > start + 0.05
    assert first_last(rows, "loss")[1] < first_last(rows, "loss")[0]


def test_listwise_lipo_lambda_loss_falls(tmp_path):
    rows = run(tmp_path, "lipo", data=str(sample_path("listwise")), objective="lipo_lambda", batch_size=8,
               max_steps=12, objective_args={"beta": 0.5})
    start, end = first_last(rows, "loss")
    assert end < 0.9 * start


JUDGED = [
    {"prompt": "Name a primary colour.", "completion": "Green.", "judgment": "Wrong: green is secondary.",
     "score": 2},
    {"prompt": "What is 2 + 2?", "completion": "4.", "judgment": "Correct and concise.", "score": 9},
    {"prompt": "Say hello in French.", "completion": "Hola.", "judgment": "That is Spanish, not French.",
     "score": 1},
    {"prompt": "Capital of Italy?", "completion": "Rome.", "judgment": "Right.", "score": 8},
]


def test_judged_cut_loss_falls(tmp_path):
    data = tmp_path / "judged.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in JUDGED))
    rows = run(tmp_path, "cut", data=str(data), objective="cut", batch_size=4, max_steps=12)
    assert rows[0]["count/negative"] == 2.0 and rows[0]["count/positive"] == 2.0
    start, end = first_last(rows, "loss")
    assert end < 0.9 * start


def test_distill_dckd_moves_the_student_to_the_teacher(tmp_path):
    pairs = sample_path("pairwise")
    # The teacher: the tiny model after a few high-lr SFT steps on the chosen responses (peaked where the
    # untrained student is near uniform), saved as an HF directory with the same tokenizer.
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": r["chosen"]}) + "\n" for r in rows))
    run(tmp_path, "teacher", data=str(sft), objective="sft", batch_size=16, max_steps=8, lr=3e-2)
    teacher = str(tmp_path / "teacher" / "final")
    rows = run(tmp_path, "dckd", data=str(pairs), objective="dckd", batch_size=16, max_steps=10,
               teacher_model=teacher, teacher_topk=8, objective_args={"sft_weight": 0.0})
    for key in ("kl/chosen", "kl/rejected"):
        start, end = first_last(rows, key)
        assert start > 1.0 and end < 0.8 * start, key
