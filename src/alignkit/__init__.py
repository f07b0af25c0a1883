"""alignkit: preference data -> reward models -> training-time alignment -> test-time alignment -> evaluation.

The Trainer-shaped API (issue #16.9), resolved lazily so `import alignkit` stays light:

    import alignkit
    alignkit.train(model=..., tokenizer=..., train_dataset=..., config=...)   # alignkit.api.train
    alignkit.evaluate(model=..., prompts="suite:test", reward="csr")          # alignkit.api.evaluate
    alignkit.generate(model, ["Write a haiku."], strategy="sample")           # alignkit.api.generate

`alignkit.train` and `alignkit.evaluate` are the subpackages too (`import alignkit.train.engine` works as before);
calling them runs the API functions.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "generate", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "evaluate"):
        return importlib.import_module(f"{__name__}.{name}")  # a callable package (see its __init__)
    if name == "generate":
        from alignkit.api import generate

        return generate
    raise AttributeError(f"module 'alignkit' has no attribute {name!r}")
