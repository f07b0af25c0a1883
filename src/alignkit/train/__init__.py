"""The one offline training engine (objectives + Accelerate loop), log-prob kernels, reference modes, checkpoints.

Public entry points are imported lazily so `import alignkit.train.<module>` stays light.
"""

from __future__ import annotations

import sys as _sys
import types as _types
from typing import Any
from typing import Any as _Any

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


class _CallablePackage(_types.ModuleType):
    """Calling the package runs the top-level API, `alignkit.train(...)` (`alignkit.api.train`; issue #16.9):
    `alignkit.train` is this package once any `alignkit.train.*` module is imported, so the callable lives here."""

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        from alignkit.api import train as _api

        return _api(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
