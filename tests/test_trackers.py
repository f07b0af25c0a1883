"""`report_to` for every tracker TRL takes (issue #16.11), offline: one training step through the CLI, then the
logged loss read back through the tracker's own reader, so a tracker that silently logged nothing fails here.

Each run is a child process: trackio fixes its store directory at import and wandb keeps process-wide state, so
an in-process run would leak into the other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TRAIN = textwrap.dedent("""
    import json, sys
    from alignkit.cli import main

    data, run, tracker = sys.argv[1], sys.argv[2], sys.argv[3]
    code = main(["train", "--model", "tiny-random:1:32", "--data", data, "--output-dir", run, "--max-steps", "2",
                 "--report-to", tracker, "--set", "batch_size=2", "--set", "progress=false",
                 "--set", "torch_threads=1", "--set", "max_length=64"])
    losses = [r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in r]
    print("LOSSES " + json.dumps(losses))
    assert code == 0, code
""")


def _train(tmp_path: Path, tracker: str, env: dict[str, str], read_back: str) -> tuple[list[float], object]:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f" yes {i}.", "rejected": f" no {i}."}) + "\n"
                            for i in range(4)))
    run = tmp_path / "run"
    script = tmp_path / "train.py"
    script.write_text(TRAIN + textwrap.dedent(read_back))
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env}
    proc = subprocess.run([sys.executable, str(script), str(data), str(run), tracker], env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    losses = json.loads(next(line for line in lines if line.startswith("LOSSES "))[7:])
    logged = json.loads(next(line for line in lines if line.startswith("LOGGED "))[7:])
    assert len(losses) == 2
    return losses, logged


def test_wandb_offline_writes_a_run_that_holds_the_losses(tmp_path: Path) -> None:
    # Offline mode: nothing leaves the machine; `wandb sync RUN/wandb/offline-run-*` would upload it later.
    losses, logged = _train(tmp_path, "wandb", {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}, """
        import glob

        # wandb's run file is a log of protobuf records written by wandb-core (Go); the SDK ships no Python reader
        # for it any more, so look for each history value's JSON text next to the metric's name in the records.
        [path] = glob.glob(run + "/wandb/offline-run-*/run-*.wandb")
        blob = open(path, "rb").read()
        logged = [x for x in losses if b"train/loss" in blob and json.dumps(x).encode() in blob]
        print("LOGGED " + json.dumps(logged))
    """)
    assert logged == losses


def test_mlflow_file_store_under_the_run_holds_the_losses(tmp_path: Path) -> None:
    # No MLFLOW_TRACKING_URI: alignkit points MLflow at a file store in the run directory.
    losses, logged = _train(tmp_path, "mlflow", {"MLFLOW_TRACKING_URI": ""}, """
        from pathlib import Path
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=(Path(run) / "mlruns").resolve().as_uri())
        [exp] = [e for e in client.search_experiments() if e.name == "run"]
        [r] = client.search_runs([exp.experiment_id])
        history = sorted(client.get_metric_history(r.info.run_id, "train/loss"), key=lambda m: m.step)
        print("LOGGED " + json.dumps([m.value for m in history]))
    """)
    assert logged == losses


def test_trackio_local_store_holds_the_losses(tmp_path: Path) -> None:
    losses, logged = _train(tmp_path, "trackio", {"TRACKIO_DIR": str(tmp_path / "trackio")}, """
        from trackio.sqlite_storage import SQLiteStorage

        [name] = SQLiteStorage.get_runs("run")
        logs = SQLiteStorage.get_logs("run", name)
        print("LOGGED " + json.dumps([row["train/loss"] for row in logs if "train/loss" in row]))
    """)
    assert logged == losses
