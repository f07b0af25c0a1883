"""The training loop's per-step metrics: each key is the mean over the micro-batches (of every process) that
reported it. Unpaired objectives leave `rewards/chosen` out of a batch without a desirable item, so in a
multi-process run the processes may hold different keys; that must neither abort the collective nor count as 0."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from alignkit.runtime import make_accelerator
from alignkit.train.config import TrainConfig
from alignkit.train.loop import train_loop

SCRIPT = textwrap.dedent("""
    import sys
    from alignkit.data.convert import pairwise_to_unpaired
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train
    from alignkit.train.synthetic import synthetic_pairs

    out, bs = sys.argv[1], int(sys.argv[2])
    alternating = pairwise_to_unpaired(synthetic_pairs(8))[0]  # D0 U0 D1 U1 ...
    # Global batches of 4 as D D U U: with 2 processes × 2, rank 0 sees only desirable items, rank 1 only
    # undesirable ones (shuffle=False keeps that order).
    blocks = [alternating[i:i + 4] for i in range(0, len(alternating), 4)]
    records = [r for b in blocks for r in (b[0], b[2], b[1], b[3])]
    cfg = TrainConfig(model="tiny-random:1:32", data="<memory>", objective="kto", output_dir=out, batch_size=bs,
                      lr=5e-2, max_steps=2, progress=False, torch_threads=1, eval_split=0.0, shuffle=False)
    train(cfg, records=records)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_processes_that_report_different_metric_keys_train_and_average_by_reporter(tmp_path: Path) -> None:
    script = tmp_path / "kto.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()), str(script),
                          str(tmp_path / "two"), "2"], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]  # before: gloo aborted on the mismatched reduce
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b, strict=True):
        # rank 0 alone reported rewards/chosen and rank 1 alone rewards/rejected: each is that rank's value, which
        # is the one-process value over the same global batch (not halved by a rank that had no such item)
        for key in ("loss", "kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-4), (key, ra, rb)
        assert rb["count/desirable"] == pytest.approx(ra["count/desirable"] / 2)  # a mean over the 2 ranks
        assert "rewards/margin" in ra and "rewards/margin" not in rb  # no rank saw both labels


class _Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


class _Source:
    def __len__(self) -> int:
        return 8

    def get(self, indices: list[int]) -> list[int]:
        return indices


def test_a_key_left_out_of_some_micro_batches_is_averaged_over_the_others(tmp_path: Path) -> None:
    def step_fn(model: nn.Module, batch: list[int]) -> tuple[torch.Tensor, dict[str, float], int]:
        metrics = {"always": float(batch[0])}
        if batch[0] % 4 == 0:  # the first of the two micro-batches of each step
            metrics["sometimes"] = 3.0
        return (model.w - 1.0) ** 2, metrics, 1

    cfg = TrainConfig(model="-", data="<memory>", batch_size=2, grad_accum=2, max_steps=2, lr=0.1,
                      shuffle=False, progress=False)
    train_loop(_Scalar(), _Source(), step_fn, cfg, tmp_path, accelerator=make_accelerator(), log=lambda _m: None)
    rows = _rows(tmp_path)
    # micro-batches start at 0, 2 (step 1) and 4, 6 (step 2)
    assert [r["always"] for r in rows] == [1.0, 5.0]
    assert [r["sometimes"] for r in rows] == [3.0, 3.0]  # before: 1.5, the missing micro-batch counted as 0
