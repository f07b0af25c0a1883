"""Process-level helpers every trainer shares: seeding, the Accelerate factory, the LR schedule, the eval split.

The offline engine (`train/engine.py`, `train/loop.py`), online RL (`rl/trainer.py`) and reward-model training
(`rewards/training/run.py`) all use these. They live here, at the top of the package and importing nothing from
alignkit, so that any layer can use them without reaching into another layer's engine (issue #22, item 5; the
layering is ../shared/DESIGN.md's and docs/architecture.md's). `train.engine` and `train.loop` re-export the old
names.
"""

from __future__ import annotations

import math
import os
import random
import sys
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (torch also seeds every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator(mixed_precision: str | None = None) -> Any:
    """An `accelerate.Accelerator` for this machine: on CPU-only hosts `cpu=True`, so torchrun's WORLD_SIZE is
    honoured (without it Accelerate starts one independent process per rank on a machine without GPUs).
    `mixed_precision` ("bf16", "fp16"; TRL's `bf16: true`) autocasts the forward passes; None leaves Accelerate's
    default (`accelerate launch --mixed_precision` or its config file)."""
    from accelerate import Accelerator

    has_gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    if mixed_precision in (None, "no"):
        accelerator = Accelerator(cpu=not has_gpu)
    else:
        accelerator = Accelerator(cpu=not has_gpu, mixed_precision=mixed_precision)
    note = unapplied_backend_note(accelerator)
    if note and accelerator.is_main_process:
        print(f"warning: {note}", file=sys.stderr)
    return accelerator


# `accelerate launch` announces an FSDP / DeepSpeed config through these variables (accelerate.commands.launch).
_BACKEND_ENV = (("ACCELERATE_USE_FSDP", "FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED", "DeepSpeed"))


def unapplied_backend_note(accelerator: Any) -> str | None:
    """What `accelerate launch` was asked for (FSDP, DeepSpeed) and did not give, in one line, or None.

    Why: Accelerate (1.15) sets up FSDP and DeepSpeed only on GPU-like devices; on a CPU host (`cpu=True`, gloo) it
    runs the same launch as plain data parallel, every rank holding the whole model, and says nothing.
    docs/migrating-from-trl.md, "Distributed", records what was run here."""
    got = getattr(accelerator.distributed_type, "value", str(accelerator.distributed_type))
    for env, kind, name in _BACKEND_ENV:
        if os.environ.get(env, "false").lower() == "true" and got != kind:
            return (f"the accelerate config asks for {name}, but Accelerate runs {got} here ({accelerator.device}): "
                    f"{name} needs a GPU-like device, so every process holds the whole model (data parallel)")
    return None


# `transformers.get_scheduler`'s names (TRL's `lr_scheduler_type`), less `reduce_lr_on_plateau`, which steps on an
# eval metric rather than once per optimiser step.
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay")


def warmup_for(warmup_steps: int, warmup_ratio: float, total: int) -> int:
    """Warmup steps as `transformers.TrainingArguments` resolves them: `warmup_steps` if set, else
    `ceil(warmup_ratio × total)`."""
    return warmup_steps if warmup_steps > 0 else math.ceil(warmup_ratio * total)


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int,
                   kwargs: dict[str, Any] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """The LR schedule `transformers.get_scheduler(kind, ...)` builds, so every TRL `lr_scheduler_type` means
    here what it means in TRL (linear warmup from 0, then the named decay). `constant` with warmup > 0 is
    `constant_with_warmup` (transformers' `constant` ignores warmup; alignkit's always honoured it).
    `kwargs` go to the scheduler (`scheduler_specific_kwargs`, TRL's `lr_scheduler_kwargs`, e.g. `min_lr_rate`
    for cosine_with_min_lr, `num_cycles` for cosine_with_restarts)."""
    from transformers import get_scheduler

    if kind not in SCHEDULERS:
        raise ValueError(f"scheduler {kind!r} is not one of {list(SCHEDULERS)}")
    if kind == "constant" and warmup > 0:
        kind = "constant_with_warmup"
    return get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=total,
                         scheduler_specific_kwargs=dict(kwargs or {}))


def split_eval(records: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, held-out) records: `round(len × fraction)` examples (at least one) held out by a seeded
    permutation, both lists in their original order; `fraction <= 0` holds nothing out."""
    if fraction <= 0:
        return records, []
    n_eval = max(1, int(round(len(records) * fraction)))
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed + 7)).tolist()
    held = set(order[:n_eval])
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])
