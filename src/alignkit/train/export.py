"""`alignkit export RUN OUT`: a run's trained model as a plain HF directory (LoRA merged).

An existing OUT is never deleted by accident (issue #14.7): export refuses unless `overwrite=True`, and then builds
the new directory beside OUT and swaps it in (`alignkit.rundir.replace_dir`), so OUT is at every moment either the
old model or the new one, never missing or half-written. OUT is locked while it is written, and it is checked for
writability before any model is loaded.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from alignkit.errors import ConfigError
from alignkit.rundir import lock_output_file, replace_dir
from alignkit.train.config import TrainConfig


def _check_target(run_dir: Path, out: Path, overwrite: bool) -> None:
    run, target = run_dir.resolve(), out.resolve()
    if target == run or target in run.parents:
        raise ConfigError(f"export target {out} is the run directory {run_dir} or contains it; choose another OUT")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ConfigError(f"{out} exists and is not a directory; choose another OUT")
        if not overwrite:
            raise ConfigError(f"{out} already exists; pass --overwrite to replace it (the old contents are removed "
                              "only once the new model is complete)")


def _clean_staging(out: Path) -> None:
    """Staging directories of an export to `out` that was killed (called under `out`'s lock)."""
    for p in out.parent.glob(f".{out.name}.export-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.parent.glob(f"..{out.name}.export-*"):  # merge_and_save's own temp dir inside a staging path
        shutil.rmtree(p, ignore_errors=True)


def export(run_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write a plain HF directory (LoRA merged) from a run: its `final/`, else its latest valid checkpoint."""
    from alignkit.config import load_config
    from alignkit.models import load_model, merge_and_save
    from alignkit.train.checkpoint import latest_valid, load_file, load_trainable
    from alignkit.train.logps import CompletionLogProbs

    run_dir, out = Path(run_dir), Path(out)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise ConfigError(f"{run_dir} is not an alignkit run directory (no config.yaml)")
    _check_target(run_dir, out, overwrite)
    with lock_output_file(out, enabled=True):  # also proves OUT's parent is writable, before loading the model
        _clean_staging(out)
        cfg = load_config(TrainConfig, cfg_path)
        model, tokenizer = load_model(cfg.model, lora=cfg.lora, seed=cfg.seed)
        final = run_dir / "final"
        if (final / "alignkit.json").exists():
            if cfg.lora.enabled:
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file as load_st

                set_peft_model_state_dict(model, load_st(str(final / "adapter_model.safetensors")))
            else:
                model, tokenizer = load_model(str(final))
        else:
            ckpt = latest_valid(run_dir / "checkpoints")
            if ckpt is None:
                raise ConfigError(f"{run_dir} has neither final/ nor a valid checkpoint to export")
            name = "adapter.safetensors" if cfg.lora.enabled else "model.safetensors"
            # Checkpoint names are those of the CompletionLogProbs wrapper the loop trained.
            load_trainable(CompletionLogProbs(model), load_file(str(ckpt / name)), ckpt)
        staging = out.parent / f".{out.name}.export-{uuid.uuid4().hex[:8]}"
        try:
            merge_and_save(model, tokenizer, staging)
            _check_target(run_dir, out, overwrite)  # OUT may have appeared while the model was written
            replace_dir(staging, out)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return out
