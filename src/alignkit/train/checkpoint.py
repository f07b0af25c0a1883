"""Atomic, checksummed checkpoints; finding the latest good one; what a previous run left in a run directory.

Layout of `RUN_DIR/checkpoints/step-N/`:
  model.safetensors      trainable parameters by name (all weights for full fine-tuning; the LoRA adapter's
                         weights for LoRA runs, file `adapter.safetensors` then)
  optimizer.pt           optimiser state_dict (tensors and numbers only; loaded with weights_only=True)
  scheduler.pt           LR scheduler state_dict (same)
  rng-<rank>.pt          torch / python / numpy RNG states of each process, as tensors
  state.json             step, data position, bad-step counter, objective state (floats)
  COMPLETE               written last: the manifest, `{"format": 2, "files": {name: {"bytes", "sha256"}}}`

A checkpoint is written into `checkpoints/.tmp-step-N-*` and renamed into place, so a crash leaves no half
`step-N`. On resume every file is checked against the manifest (size, then SHA-256, issue #14.12), so flipped bytes
are caught as surely as truncation; a checkpoint that fails (missing files, sizes or hashes that differ, no
COMPLETE) is reported, renamed to `step-N.corrupt` (kept for inspection, never silently deleted), and the previous
one is used. Markers of the first format (sizes only) are still accepted, checked by size.

`prepare_run_dir` runs under the run lock before any data or model is loaded (docs/reliability.md, "Runs and
checkpoints"): it removes what a killed run left (`.tmp-step-*`, `.final-*`, `.reference-offload-*`) and refuses
to start a fresh run over a previous run's checkpoints unless asked to resume or to overwrite (issue #14.6).
"""

from __future__ import annotations

import hashlib
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

from alignkit.errors import ConfigError, TrainingError
from alignkit.rundir import replace_dir

MARKER = "COMPLETE"
REQUIRED = ("optimizer.pt", "scheduler.pt", "state.json")
MANIFEST_FORMAT = 2
# What a run killed mid-write leaves behind; removed under the run lock, where nobody else can be writing them.
LEFTOVERS = (("checkpoints", ".tmp-step-"), (".", ".final-"), (".", ".reference-offload-"))
# Files a fresh run would replace or delete: a previous run lives here.
RUN_OUTPUTS = ("metrics.jsonl", "summary.json", "samples.jsonl", "final", "tensorboard", "checkpoints",
               "data_skipped.json")


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(directory: Path) -> None:
    """`COMPLETE`: byte size and SHA-256 of every file in `directory`, written last."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(directory.iterdir()) if p.is_file() and p.name != MARKER}
    (directory / MARKER).write_text(json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1))


def read_manifest(marker: Path) -> dict[str, dict[str, Any]]:
    """{file name: {"bytes", "sha256"?}}; the first format (a plain {name: size}) has no hashes."""
    raw = json.loads(marker.read_text())
    if isinstance(raw, dict) and raw.get("format") == MANIFEST_FORMAT and isinstance(raw.get("files"), dict):
        return raw["files"]
    if isinstance(raw, dict) and all(isinstance(v, int) for v in raw.values()):
        return {name: {"bytes": size} for name, size in raw.items()}
    raise ValueError("not a checkpoint manifest")


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
    """Write `step-N` atomically (main process only) and prune all but the newest `keep` ones.

    Weights that are not finite are never written (a checkpoint must be something worth resuming from).
    """
    bad = [n for n, p in model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]
    if bad:
        raise TrainingError(f"step {step}: weights are not finite ({', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}); "
                            f"no checkpoint written, the newest good one stays in {ckpt_root}")
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
        write_manifest(tmp)
        replace_dir(tmp, final)
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


def validate_checkpoint(path: Path, *, hashes: bool = True) -> str | None:
    """None when `path` is a complete, intact checkpoint; otherwise the reason it is not.

    Sizes are checked first (cheap, catches truncation), then every file's SHA-256 against the manifest.
    """
    marker = path / MARKER
    if not marker.exists():
        return "no COMPLETE marker (half-written)"
    try:
        files = read_manifest(marker)
    except (ValueError, OSError) as e:
        return f"unreadable COMPLETE marker ({e})"
    weights = [n for n in ("model.safetensors", "adapter.safetensors") if n in files]
    if not weights:
        return "no weights file listed"
    for name in (*REQUIRED, *weights):
        if name not in files:
            return f"{name} missing from the marker"
    for name, entry in files.items():
        f = path / name
        if not f.exists():
            return f"{name} is missing"
        if f.stat().st_size != entry.get("bytes"):
            return f"{name} has {f.stat().st_size} bytes, expected {entry.get('bytes')} (truncated or overwritten)"
    if hashes:
        for name, entry in files.items():
            if "sha256" in entry and sha256_file(path / name) != entry["sha256"]:
                return f"{name} does not match its SHA-256 in {MARKER} (corrupted on disk)"
    try:
        with safe_open(str(path / weights[0]), framework="pt") as st:
            list(st.keys())
        json.loads((path / "state.json").read_text())
    except Exception as e:  # noqa: BLE001 - any parse failure means the checkpoint is unusable
        return f"unreadable file ({type(e).__name__}: {e})"
    return None


def latest_valid(ckpt_root: Path, log: Any = print, *, quarantine: bool = False) -> Path | None:
    """The newest checkpoint that validates; corrupt ones are reported and skipped.

    `quarantine=True` (the resuming main process) renames each bad one to `step-N.corrupt`, so it is kept for
    inspection but neither chosen again nor counted when old checkpoints are pruned.
    """
    for path in reversed(list_checkpoints(ckpt_root)):
        reason = validate_checkpoint(path)
        if reason is None:
            return path
        note = ""
        if quarantine:
            aside = path.with_name(path.name + ".corrupt")
            if aside.exists():
                shutil.rmtree(aside)
            path.rename(aside)
            note = f" (kept as {aside.name})"
        log(f"warning: checkpoint {path} is unusable: {reason}{note}; falling back to the previous one")
    return None


def clean_leftovers(run_dir: Path, log: Any = print) -> list[Path]:
    """Remove the temp directories a killed run left in `run_dir` (call only while holding the run lock)."""
    removed = []
    for sub, prefix in LEFTOVERS:
        parent = run_dir / sub
        if not parent.is_dir():
            continue
        for p in sorted(parent.iterdir()):
            if p.name.startswith(prefix) and p.is_dir():
                shutil.rmtree(p)
                removed.append(p)
    if removed:
        log(f"removed {len(removed)} temporary director{'y' if len(removed) == 1 else 'ies'} left by an "
            f"interrupted run: {', '.join(str(p.relative_to(run_dir)) for p in removed)}")
    return removed


def prepare_from_config(cfg: Any, log: Any = print) -> None:
    """`prepare_run_dir` for a TrainConfig (the hook `alignkit.rundir.locks_output_dir` runs under the lock)."""
    prepare_run_dir(cfg.output_dir, resume=cfg.resume, overwrite=getattr(cfg, "overwrite", False), log=log)


def prepare_run_dir(run_dir: str | Path, *, resume: bool, overwrite: bool = False, log: Any = print) -> None:
    """Before a training run loads anything: clean leftovers, and decide what to do with a previous run.

    A fresh run (no `resume`) into a directory that holds checkpoints or `final/` is refused unless `overwrite`,
    which deletes the previous run's outputs (and says so). Like TRL/HF's `overwrite_output_dir`, starting over is
    explicit; resuming is too (`--resume`), because an automatic resume under a changed config would mix two runs.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    clean_leftovers(run_dir, log)
    if resume:
        return
    previous = [p.name for p in list_checkpoints(run_dir / "checkpoints")]
    if (run_dir / "final").exists():
        previous.append("final/")
    if not previous:
        return
    if not overwrite:
        shown = ", ".join(previous[-3:]) + (f" and {len(previous) - 3} more" if len(previous) > 3 else "")
        raise ConfigError(f"{run_dir} already holds a training run ({shown}); pass --resume to continue it, or "
                          "--overwrite to delete it and start again (or choose another --output-dir)")
    gone = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    log(f"--overwrite: deleting the previous run in {run_dir} ({', '.join(gone)})")
    for name in gone:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()


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
