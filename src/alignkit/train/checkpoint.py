"""Atomic checkpoints and finding the latest valid one.

Layout of `RUN_DIR/checkpoints/step-N/`:
  model.safetensors      trainable parameters by name (all weights for full fine-tuning; the LoRA adapter's
                         weights for LoRA runs, file `adapter.safetensors` then)
  optimizer.pt           optimiser state_dict (tensors and numbers only; loaded with weights_only=True)
  scheduler.pt           LR scheduler state_dict (same)
  rng-<rank>.pt          torch / python / numpy RNG states of each process, as tensors
  state.json             step, data position, bad-step counter, objective state (floats)
  COMPLETE               written last: the byte size of every file above

A checkpoint is written into `checkpoints/.tmp-step-N-*` and renamed into place, so a crash leaves no half
`step-N`. A directory that still fails validation (missing files, unreadable safetensors, sizes that differ from
COMPLETE, no COMPLETE) is reported and skipped on resume, and the previous one is used.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from alignkit.errors import TrainingError

MARKER = "COMPLETE"
REQUIRED = ("optimizer.pt", "scheduler.pt", "state.json")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name (tied weights appear once), detached, contiguous CPU copies."""
    return {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    missing, unexpected = expected - set(tensors), set(tensors) - set(params)
    if missing or unexpected:
        raise TrainingError(f"{source}: checkpoint does not match the model (missing {sorted(missing)[:5]}, "
                            f"unexpected {sorted(unexpected)[:5]}); was it written by a different config?")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t)


def rng_state() -> dict[str, torch.Tensor]:
    np_state = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_meta": torch.tensor([int(np_state[2]), int(np_state[3])], dtype=torch.int64),
        "numpy_gauss": torch.tensor([float(np_state[4])], dtype=torch.float64),
        "python": torch.tensor(list(py[1]), dtype=torch.int64),
        "python_version": torch.tensor([py[0]], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if py[2] is None else py[2]], dtype=torch.float64),
    }


def set_rng_state(s: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(s["torch"])
    meta = s["numpy_meta"].tolist()
    np.random.set_state(("MT19937", s["numpy_keys"].numpy().astype(np.uint32), meta[0], meta[1],
                         float(s["numpy_gauss"][0])))
    gauss = float(s["python_gauss"][0])
    random.setstate((int(s["python_version"][0]), tuple(int(v) for v in s["python"].tolist()),
                     None if gauss != gauss else gauss))


@dataclass
class Checkpoint:
    path: Path
    step: int
    state: dict[str, Any]


def weights_file(lora: bool) -> str:
    return "adapter.safetensors" if lora else "model.safetensors"


def save_checkpoint(ckpt_root: Path, step: int, model: nn.Module, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], *, lora: bool, rank_rng: dict[int, dict[str, torch.Tensor]],
                    keep: int = 2) -> Path:
    """Write `step-N` atomically (main process only) and prune all but the newest `keep` valid ones."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step}-", dir=ckpt_root))
    try:
        save_file(trainable_state(model), str(tmp / weights_file(lora)), metadata={"step": str(step)})
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        for rank, rng in rank_rng.items():
            torch.save(rng, tmp / f"rng-{rank}.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir()}
        (tmp / MARKER).write_text(json.dumps(sizes, indent=1))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep > 0:
        valid = [c for c in list_checkpoints(ckpt_root) if c != final]
        for old in valid[: max(0, len(valid) - (keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """`step-N` directories, oldest first (no validation)."""
    if not ckpt_root.exists():
        return []
    dirs = [p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith("step-")
            and p.name[5:].isdigit()]
    return sorted(dirs, key=lambda p: int(p.name[5:]))


def validate_checkpoint(path: Path) -> str | None:
    """None when `path` is a complete checkpoint; otherwise the reason it is not."""
    marker = path / MARKER
    if not marker.exists():
        return "no COMPLETE marker (half-written)"
    try:
        sizes = json.loads(marker.read_text())
    except (json.JSONDecodeError, OSError) as e:
        return f"unreadable COMPLETE marker ({e})"
    weights = [n for n in ("model.safetensors", "adapter.safetensors") if n in sizes]
    if not weights:
        return "no weights file listed"
    for name in (*REQUIRED, *weights):
        if name not in sizes:
            return f"{name} missing from the marker"
    for name, size in sizes.items():
        f = path / name
        if not f.exists():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, expected {size} (truncated or overwritten)"
    try:
        with safe_open(str(path / weights[0]), framework="pt") as st:
            list(st.keys())
        json.loads((path / "state.json").read_text())
    except Exception as e:  # noqa: BLE001 - any parse failure means the checkpoint is unusable
        return f"unreadable file ({type(e).__name__}: {e})"
    return None


def latest_valid(ckpt_root: Path, log: Any = print) -> Path | None:
    """The newest checkpoint that validates; corrupt ones are reported and skipped."""
    for path in reversed(list_checkpoints(ckpt_root)):
        reason = validate_checkpoint(path)
        if reason is None:
            return path
        log(f"checkpoint {path} is unusable: {reason}; trying the previous one")
    return None


def load_checkpoint(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, rank: int) -> Checkpoint:
    """Restore weights, optimiser, scheduler and this rank's RNG; return the saved bookkeeping state."""
    weights = path / "adapter.safetensors"
    if not weights.exists():
        weights = path / "model.safetensors"
    load_trainable(model, load_file(str(weights)), path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = path / f"rng-{rank}.pt"
    if rng.exists():
        set_rng_state(torch.load(rng, weights_only=True))
    state = json.loads((path / "state.json").read_text())
    return Checkpoint(path, int(state["step"]), state)
