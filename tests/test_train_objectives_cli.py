"""Every registered objective trains end to end from `alignkit train` on the tiny model (two optimiser steps).

Data: the bundled samples of each data kind (`alignkit.data.io.sample_path`) and a small synthetic judged file for
CUT. Objectives that need more than data get it through config keys: a teacher (dckd/adpa), aligned scorers
(poft), a UDM prompt encoder (bco), an AFT boundary.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data.io import sample_path
from alignkit.objectives import describe_objectives

# Per-objective settings beyond the data (everything else runs with its registered defaults).
EXTRA: dict[str, list[str]] = {
    "aft": ["objective_args.boundary=0.5"],
    "dckd": ["teacher_model=tiny-random:1:32"],
    "adpa": ["teacher_model=tiny-random:1:32", "teacher_reference_model=tiny-random"],
    "poft": ["aligned_models=[tiny-random, tiny-random:1:32]"],
    "bco": ["udm_model=tiny-random"],
}

JUDGED = [
    {"prompt": "Name a primary colour.", "completion": "Green.", "judgment": "Wrong: green is secondary.",
     "score": 2},
    {"prompt": "What is 2 + 2?", "completion": "4.", "judgment": "Correct and concise.", "score": 9},
    {"prompt": [{"role": "user", "content": "Say hello in French."}], "completion": "Hola.",
     "judgment": "That is Spanish, not French.", "score": 1},
    {"prompt": "Capital of Italy?", "completion": "Rome.", "judgment": "Right.", "score": 8},
]


def write_judged(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in JUDGED))
    return path


def data_for(kind: str, tmp_path: Path) -> str:
    if kind == "judged":
        return str(write_judged(tmp_path / "judged.jsonl"))
    return str(sample_path(kind))


OBJECTIVES = [row["name"] for row in describe_objectives()]


def test_every_data_kind_is_covered():
    assert {row["data_kind"] for row in describe_objectives()} <= {"sft", "pairwise", "unpaired", "listwise",
                                                                    "judged"}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_trains_from_the_cli(name, tmp_path, capsys):
    kind = next(r["data_kind"] for r in describe_objectives() if r["name"] == name)
    run = tmp_path / "run"
    sets = ["max_steps=2", "batch_size=2", "lr=1e-3", "progress=false", "torch_threads=1", *EXTRA.get(name, [])]
    args = ["train", "--model", "tiny-random", "--data", data_for(kind, tmp_path), "--objective", name,
            "--output-dir", str(run)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0, capsys.readouterr().err
    assert "trained 2 steps" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 2 and all(v is not None and math.isfinite(v) for v in losses)
    assert (run / "final" / "config.json").exists()


def test_teacher_objective_without_a_teacher_is_a_clear_error(tmp_path, capsys):
    rc = main(["train", "--model", "tiny-random", "--data", str(sample_path("pairwise")), "--objective", "dckd",
               "--output-dir", str(tmp_path / "r"), "--set", "max_steps=1", "--set", "progress=false"])
    assert rc != 0
    assert "teacher_model" in capsys.readouterr().err


def test_poft_without_aligned_models_is_a_clear_error(tmp_path, capsys):
    rc = main(["train", "--model", "tiny-random", "--data", str(sample_path("sft")), "--objective", "poft",
               "--output-dir", str(tmp_path / "r"), "--set", "max_steps=1", "--set", "progress=false"])
    assert rc != 0
    assert "aligned_models" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "extra"), [("adpa", []), ("cut", []), ("poft", []), ("bco", []),
                                             ("lipo_lambda", ["shared_prompt=true"])])
def test_precomputed_extras_also_serve_the_eval_split(name, extra, tmp_path, capsys):
    kind = next(r["data_kind"] for r in describe_objectives() if r["name"] == name)
    data = data_for(kind, tmp_path)
    if kind == "judged":  # enough records for a held-out split with both judgments
        rows = JUDGED * 2
        Path(data).write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    args = ["train", "--model", "tiny-random", "--data", data, "--objective", name, "--output-dir", str(run)]
    for s in ["max_steps=1", "batch_size=2", "eval_split=0.25", "progress=false", "torch_threads=1",
              *EXTRA.get(name, []), *extra]:
        args += ["--set", s]
    assert main(args) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert len(evals) == 1 and math.isfinite(evals[0])


@pytest.mark.parametrize("name", ["dckd", "adpa", "cut", "poft", "bco"])
def test_resume_reloads_precomputed_extras_bit_for_bit(name, tmp_path):
    kind = next(r["data_kind"] for r in describe_objectives() if r["name"] == name)
    data = data_for(kind, tmp_path)

    def train_cli(run: Path, *sets: str, resume: bool = False) -> list[float]:
        args = ["train", "--output-dir", str(run)]
        if resume:
            args.append("--resume")
        else:
            args += ["--model", "tiny-random", "--data", data, "--objective", name]
        # A constant schedule: a linear decay would depend on max_steps, which differs between the runs.
        for s in ["batch_size=2", "lr=1e-2", "save_every=1", "scheduler=constant", "progress=false", "torch_threads=1",
                  *EXTRA.get(name, []), *sets]:
            args += ["--set", s]
        assert main(args) == 0
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r]

    straight = train_cli(tmp_path / "a", "max_steps=3")
    train_cli(tmp_path / "b", "max_steps=2")
    resumed = train_cli(tmp_path / "b", "max_steps=3", resume=True)
    assert resumed == straight
