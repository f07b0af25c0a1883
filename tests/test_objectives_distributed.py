"""BCO's running reward shift δ in data-parallel training (spec §11.3: running statistics are reduced across
ranks): `torchrun --nproc_per_node 2` (gloo, CPU) must hold the δ of one process that sees the whole global batch,
not each rank's running mean of its own half."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    from alignkit.data.convert import pairwise_to_unpaired
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train
    from alignkit.train.synthetic import synthetic_pairs

    out, bs = sys.argv[1], int(sys.argv[2])
    cfg = TrainConfig(model="tiny-random:1:32", data="<memory>", objective="bco", output_dir=out, batch_size=bs,
                      lr=5e-2, max_steps=3, progress=False, torch_threads=1, eval_split=0.0, shuffle=False)
    train(cfg, records=pairwise_to_unpaired(synthetic_pairs(16))[0])
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _delta(run: Path) -> dict[str, float]:
    state = json.loads((run / "checkpoints" / "step-3" / "state.json").read_text())
    return state["objective_state"]["delta"]


def test_bco_delta_is_the_global_batch_running_mean(tmp_path: Path) -> None:
    # Records alternate desirable/undesirable and are not shuffled, so every rank's half-batch holds both classes:
    # the train loop averages metrics over ranks by key, and a one-class half-batch would report other keys.
    script = tmp_path / "bco.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()), str(script),
                          str(tmp_path / "two"), "2"], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _delta(tmp_path / "one"), _delta(tmp_path / "two")
    # 3 steps × a global batch of 4 rewards; each rank alone would have counted 3 × 2
    assert a["count"] == pytest.approx(12.0) and b["count"] == pytest.approx(12.0)
    assert a["mean"] != 0.0  # the policy moved away from the reference, so δ carries information
    assert b["mean"] == pytest.approx(a["mean"], abs=1e-6)
