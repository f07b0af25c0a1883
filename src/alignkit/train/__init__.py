"""The one offline training engine (objectives + Accelerate loop), log-prob kernels, reference modes, checkpoints.

Public entry points are imported lazily so `import alignkit.train.<module>` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "TrainResult", "export", "train", "train_loop"]


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from alignkit.train.config import TrainConfig

        return TrainConfig
    if name in ("train", "export", "TrainResult"):
        from alignkit.train import engine

        return getattr(engine, name)
    if name == "train_loop":
        from alignkit.train.loop import train_loop

        return train_loop
    raise AttributeError(name)
