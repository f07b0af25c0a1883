"""Experiment trackers through Accelerate's tracker classes (`report_to`, issue #16.11): tensorboard, wandb,
trackio, mlflow, the names TRL's `report_to` takes. `metrics.jsonl` is always written; trackers mirror it.

Where each writes, offline by default where the tool allows it:

* tensorboard: `RUN/tensorboard/` (event files; `tensorboard --logdir RUN/tensorboard`).
* wandb: `RUN/wandb/`; `WANDB_MODE=offline` (set it, or `wandb offline`) keeps it off the network, `wandb sync`
  uploads later.
* trackio: trackio's local store (`~/.cache/huggingface/trackio`), project = the run directory's name.
* mlflow: `MLFLOW_TRACKING_URI` when set, else a file store at `RUN/mlruns/` (`mlflow ui --backend-store-uri`;
  `MLFLOW_ALLOW_FILE_STORE` is set for it, as MLflow 3 asks).

`check_trackers` runs before the model loads (a missing package fails in a second, not after loading and
tokenising). Only the main process creates trackers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow"}


def check_trackers(names: list[str]) -> None:
    """Fail with one line naming the package to install when a `report_to` tracker cannot be imported."""
    from accelerate.utils import imports

    available = {"tensorboard": imports.is_tensorboard_available, "wandb": imports.is_wandb_available,
                 "trackio": imports.is_trackio_available, "mlflow": imports.is_mlflow_available}
    for name in names:
        if name not in available:
            raise ConfigError(f"report_to: unsupported {name!r}; supported: {', '.join(available)}")
        if not available[name]():
            raise ConfigError(f"report_to: {name} is not installed; pip install {TRACKER_PACKAGES[name]} "
                              "(or pip install 'alignkit[tracking]')")


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as the flat scalar mapping trackers store as hyperparameters (lists as strings)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def start_trackers(names: list[str], run_dir: Path, config: dict[str, Any] | None = None) -> list[Any]:
    """Started Accelerate trackers for `names`, their hyperparameters stored."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    check_trackers(names)
    project = run_dir.resolve().name
    trackers = []
    for name in names:
        cls = LOGGER_TYPE_TO_CLASS[name]
        if name == "tensorboard":
            tracker = cls("tensorboard", logging_dir=str(run_dir))
        elif name == "wandb":
            tracker = cls(project, dir=str(run_dir))
        elif name == "mlflow":
            if not os.environ.get("MLFLOW_TRACKING_URI"):
                import mlflow

                # MLflow 3 refuses a file store unless told; a database store would need SQLAlchemy, which
                # mlflow-skinny lacks, and a file store is what `mlflow ui --backend-store-uri RUN/mlruns` reads.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
            tracker = cls(experiment_name=project, logging_dir=str(run_dir / "mlruns"))
        else:
            tracker = cls(project)
        tracker.start()
        if config:
            tracker.store_init_configuration(flat_config(config))
        trackers.append(tracker)
    return trackers


def log_to(trackers: list[Any], values: dict[str, Any], step: int) -> None:
    """Numeric values under `train/…` unless already namespaced (`eval/loss`)."""
    numeric = {(k if "/" in k else f"train/{k}"): v for k, v in values.items()
               if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for tracker in trackers:
        tracker.log(numeric, step=step)


def finish(trackers: list[Any]) -> None:
    for tracker in trackers:
        tracker.finish()
