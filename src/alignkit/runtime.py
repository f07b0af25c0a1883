"""Process-level helpers every trainer shares: seeding, the Accelerate factory, the LR schedule, the eval split.

The offline engine (`train/engine.py`, `train/loop.py`), online RL (`rl/trainer.py`) and reward-model training
(`rewards/training/run.py`) all use these. They live here, at the top of the package and importing nothing from
alignkit, so that any layer can use them without reaching into another layer's engine (issue #22, item 5; the
layering is ../shared/DESIGN.md's and docs/architecture.md's). `train.engine` and `train.loop` re-export the old
names.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (torch also seeds every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator() -> Any:
    """An `accelerate.Accelerator` for this machine: on CPU-only hosts `cpu=True`, so torchrun's WORLD_SIZE is
    honoured (without it Accelerate starts one independent process per rank on a machine without GPUs)."""
    from accelerate import Accelerator

    has_gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    return Accelerator(cpu=not has_gpu)


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0, then linear decay to 0, cosine decay to 0, or constant."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def split_eval(records: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, held-out) records: `round(len × fraction)` examples (at least one) held out by a seeded
    permutation, both lists in their original order; `fraction <= 0` holds nothing out."""
    if fraction <= 0:
        return records, []
    n_eval = max(1, int(round(len(records) * fraction)))
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed + 7)).tolist()
    held = set(order[:n_eval])
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])
