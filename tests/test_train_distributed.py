"""Data parallel on CPU: `torchrun --nproc_per_node 2` (gloo) gives the per-step losses of one process with the
same global batch (here 2 processes × 2 examples = 1 process × 4)."""

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
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train
    from alignkit.train.synthetic import synthetic_pairs

    out, bs = sys.argv[1], int(sys.argv[2])
    cfg = TrainConfig(model="tiny-random:1:32", data="<memory>", objective="dpo", output_dir=out, batch_size=bs,
                      lr=2e-3, max_steps=3, grad_accum=2, progress=False, eval_every=3, torch_threads=1)
    train(cfg, records=synthetic_pairs(16), eval_records=synthetic_pairs(4, seed=5))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGNKIT_CACHE": os.environ.get("ALIGNKIT_CACHE", "")}
    if not env["ALIGNKIT_CACHE"]:
        env.pop("ALIGNKIT_CACHE")
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()),
                          str(script), str(tmp_path / "two"), "2"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "rewards/margin", "eval/loss", "tokens"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], abs=1e-4), (key, ra, rb)
    assert len(list((tmp_path / "two" / "checkpoints" / "step-3").glob("rng-*.pt"))) == 2


PROBE = textwrap.dedent("""
    import sys
    from alignkit.data.convert import pairwise_to_unpaired
    from alignkit.objectives.base import register_objective
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train
    from alignkit.train.synthetic import synthetic_pairs

    @register_objective("_kl_probe", data_kind="unpaired", needs_reference=True, needs_extras=("kl",))
    def _kl_probe(lp):  # reports how many mismatched pairs KTO's z0 would average over
        kl = lp.extras["kl_policy"]
        return -lp.policy.mean() / 100, {"kl_rows": float(kl.numel()), "kl_sum": float(kl.sum())}

    cfg = TrainConfig(model="tiny-random:1:32", data="<memory>", objective="_kl_probe", output_dir=sys.argv[1],
                      batch_size=2, lr=2e-3, max_steps=2, progress=False, torch_threads=1)
    train(cfg, records=pairwise_to_unpaired(synthetic_pairs(16))[0])
""")


def test_kto_z0_uses_the_global_batch(tmp_path):
    """KTO's z₀ (the mean over the batch's mismatched pairs) sees every process's pairs, as TRL gathers it."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    run = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()), str(script),
                          str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [r for r in _rows(tmp_path / "two") if "kl_rows" in r]
    assert len(rows) == 2 and all(r["kl_rows"] == 4.0 for r in rows)  # 2 processes × batch 2


def test_fsdp_config_on_cpu_trains_as_data_parallel_and_says_so(tmp_path):
    """recipes/accelerate/fsdp.yaml under `accelerate launch` on this CPU host: Accelerate (1.15) sets FSDP up only
    on GPU-like devices, so the run is MULTI_CPU data parallel; it must still train and save a loadable model, and
    print one line saying FSDP was not applied (docs/migrating-from-trl.md, "Distributed")."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f" yes {i}.", "rejected": f" no {i}."}) + "\n"
                            for i in range(8)))
    config = Path(__file__).parents[1] / "recipes" / "accelerate" / "fsdp.yaml"
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(accelerate), "launch", "--config_file", str(config), "--num_processes", "2",
                          "--mixed_precision", "no", "--main_process_port", str(_free_port()), "-m", "alignkit",
                          "train", "--model", "tiny-random:1:32", "--data", str(data), "--objective", "dpo",
                          "--output-dir", str(tmp_path / "fsdp"), "--max-steps", "1", "--set", "batch_size=2",
                          "--set", "progress=false", "--set", "torch_threads=1"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("the accelerate config asks for FSDP, but Accelerate runs MULTI_CPU here") == 1
    assert [r["step"] for r in _rows(tmp_path / "fsdp") if "loss" in r] == [1]
    from alignkit.models import load_model

    model, _ = load_model(str(tmp_path / "fsdp" / "final"))
    assert model is not None
