"""The reusable training loop: any loss plugs in as `step_fn(model, batch) -> (loss, metrics, n_tokens)`.

Read top to bottom: set up the optimiser and schedule, resume from the latest valid checkpoint, then for every
optimiser step run `grad_accum` micro-batches (each rank takes its slice of the global batch), guard against
non-finite losses, clip, step, log one line of `metrics.jsonl`, evaluate and checkpoint every N steps.

Data order is a pure function of (seed, epoch): a resumed run sees exactly the batches an uninterrupted run would,
so on CPU the per-step losses are bit-for-bit identical. Multi-process runs (torchrun / accelerate launch, gloo on
CPU; DeepSpeed/FSDP through Accelerate's config) split each global batch of `batch_size × world_size` examples
across ranks, so the same global batch gives the same losses as one process.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from alignkit.errors import ConfigError, TrainingError
from alignkit.runtime import make_scheduler, warmup_for  # make_scheduler lived here; re-exported
from alignkit.train.checkpoint import latest_valid, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from alignkit.train.config import TrainConfig

StepOutput = tuple[Tensor, dict[str, float], int]
StepFn = Callable[[nn.Module, Any], StepOutput]
EvalFn = Callable[[nn.Module], dict[str, float]]


class BatchSource(Protocol):
    """Anything that turns a list of example indices into a batch for `step_fn`."""

    def __len__(self) -> int: ...

    def get(self, indices: list[int]) -> Any: ...


@dataclass
class LoopResult:
    steps: int
    run_dir: Path
    last_metrics: dict[str, Any] = field(default_factory=dict)
    skipped_steps: int = 0
    resumed_from: int = 0
    examples_left_out_per_epoch: int = 0


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool, lengths: list[int] | None = None,
                batch: int = 1, mega_batches: int = 50) -> list[int]:
    """The epoch's example order: a seeded permutation (the same for a resumed run), or the identity.

    With `lengths` (TrainConfig.group_by_length, transformers' LengthGroupedSampler): the permutation is cut into
    mega-batches of `mega_batches` batches, each sorted longest first and cut into batches, whose order within the
    mega-batch is shuffled again; a batch then holds examples of similar length, so padding (which costs compute and
    holds no signal) shrinks, while which examples meet in a mega-batch stays random."""
    if not shuffle:
        return list(range(n))
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    if lengths is None:
        return order
    out: list[int] = []
    size = max(1, mega_batches * batch)
    for start in range(0, n, size):
        mega = sorted(order[start:start + size], key=lambda i: -lengths[i])
        chunks = [mega[k:k + batch] for k in range(0, len(mega), batch)]
        for c in torch.randperm(len(chunks), generator=g).tolist():
            out += chunks[c]
    return out


def read_metrics_lines(path: Path, log: Callable[[str], None] = print, what: str = "metrics record") -> list[str]:
    """The JSON lines of a run's append-only log (`metrics.jsonl`, online RL's `samples.jsonl`), each an object
    with a `step`. A torn last line (the process was killed mid-write) is dropped and reported; an unparseable
    line anywhere else is damage this code did not cause, so it is an error (FILE:LINE) naming `what` it is."""
    lines = path.read_text(encoding="utf-8").split("\n")
    numbered = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    kept: list[str] = []
    for pos, (lineno, ln) in enumerate(numbered):
        try:
            row = json.loads(ln)
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError("no step")
        except ValueError as e:
            if pos == len(numbered) - 1:
                log(f"{path}:{lineno}: torn last line (an interrupted write) removed")
                break
            raise TrainingError(f"{path}:{lineno}: not a {what} ({e}); repair or delete that line") from None
        kept.append(ln)
    return kept


class MetricsLog:
    """`metrics.jsonl` (main process), mirrored to Accelerate's trackers named by `report_to`
    (`alignkit.train.trackers`: tensorboard, wandb, trackio, mlflow)."""

    def __init__(self, path: Path, main: bool, resume_step: int | None, report_to: list[str],
                 log: Callable[[str], None] = print, config: dict[str, Any] | None = None) -> None:
        self.path, self.main = path, main
        self.trackers: list[Any] = []
        if not main:
            return
        if resume_step is not None and path.exists():
            # Drop lines written after the checkpoint we resume from, so the log equals an uninterrupted run's.
            kept = [ln for ln in read_metrics_lines(path, log) if json.loads(ln)["step"] <= resume_step]
            path.write_text("".join(ln + "\n" for ln in kept))
        elif resume_step is None and path.exists():
            log(f"starting from step 0: {path} of an earlier start without a checkpoint is replaced")
            path.unlink()
        if report_to:
            from alignkit.train.trackers import start_trackers

            self.trackers = start_trackers(list(report_to), path.parent, config)

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
        if self.trackers:
            from alignkit.train.trackers import log_to

            log_to(self.trackers, clean, int(record["step"]))

    def close(self) -> None:
        if self.trackers:
            from alignkit.train.trackers import finish

            finish(self.trackers)
            self.trackers = []


def _config_dict(cfg: Any) -> dict[str, Any] | None:
    import dataclasses

    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None


def _reduce_metrics(accelerator: Any, sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """Each metric's mean over the micro-batches, of every process, that reported it.

    An objective may leave a key out of a batch it cannot compute it on (KTO/BCO report no `rewards/chosen` for a
    batch without a desirable item), so processes can hold different keys: a by-position tensor reduce would
    mismatch (gloo aborts with a collective mismatch) and a missing key must not count as 0. Each process sends
    its (sum, count) per key through `accelerate.utils.gather_object` instead; keys keep first-seen order.
    """
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        local_sums, local_counts = sums, counts
        sums, counts = {}, {}
        for part_sums, part_counts in gather_object([(local_sums, local_counts)]):
            for k, v in part_sums.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + part_counts[k]
    return {k: v / counts[k] for k, v in sums.items()}


def _reduce_sum(accelerator: Any, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="sum")[0])


def train_loop(model: nn.Module, source: BatchSource, step_fn: StepFn, cfg: TrainConfig, run_dir: str | Path, *,
               accelerator: Any, eval_fn: EvalFn | None = None, objective_state: dict[str, Any] | None = None,
               lora: bool = False, on_checkpoint: Callable[[int], None] | None = None,
               log: Callable[[str], None] = print) -> LoopResult:
    """Train `model` (an nn.Module whose forward `step_fn` calls) and return when `max_steps` are done.

    `model` must not be prepared yet: the loop builds AdamW over its trainable parameters and prepares both with
    `accelerator`. `objective_state` (a dict of floats the loss updates in place) is checkpointed and restored.
    """
    run_dir = Path(run_dir)
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    n = len(source)
    global_batch = cfg.batch_size * world
    micro_per_epoch = n // global_batch
    lengths = source.lengths() if cfg.group_by_length and hasattr(source, "lengths") else None
    if micro_per_epoch == 0:
        raise ConfigError(f"{n} training examples cannot fill one global batch of {global_batch} "
                          f"(batch_size {cfg.batch_size} × {world} processes); lower batch_size")
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * micro_per_epoch / cfg.grad_accum))
    left_out = n - micro_per_epoch * global_batch
    if left_out and main:
        log(f"{left_out} examples per epoch do not fill a global batch of {global_batch} and are left out "
            "of that epoch (a different set each epoch when shuffling)")

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    # The fused kernel updates in place; the default multi-tensor path holds model-sized temporaries (peak RSS).
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.adam_betas[0], cfg.adam_betas[1]),
                                  weight_decay=cfg.weight_decay, fused=True)
    scheduler = make_scheduler(optimizer, cfg.scheduler, warmup_for(cfg.warmup_steps, cfg.warmup_ratio, total), total,
                               cfg.scheduler_kwargs)
    # The scheduler is deliberately not prepared: Accelerate's wrapper would step it once per process.
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)

    step, micro, bad_in_row, skipped = 0, 0, 0, 0
    state = objective_state if objective_state is not None else {}
    ckpt_root = run_dir / "checkpoints"
    resume_from: Path | None = None
    if cfg.resume:
        resume_from = latest_valid(ckpt_root, log=log if main else (lambda _m: None), quarantine=main)
        if resume_from is None and main:
            log(f"--resume: no valid checkpoint under {ckpt_root}; starting from step 0")
    rng_to_restore: dict[str, Tensor] | None = None
    if resume_from is not None:
        ck = load_checkpoint(resume_from, raw, optimizer, scheduler, rank)
        step, micro = ck.step, int(ck.state["micro"])
        bad_in_row, skipped = int(ck.state.get("bad_in_row", 0)), int(ck.state.get("skipped", 0))
        state.clear()
        state.update(ck.state.get("objective_state", {}))
        rng_to_restore = rng_state()  # load_checkpoint restored it; keep it exact through the setup below
        if main:
            log(f"resumed from {resume_from} (step {step})")
    metrics_log = MetricsLog(run_dir / "metrics.jsonl", main, step if resume_from is not None else None,
                             cfg.report_to, log=log, config=_config_dict(cfg) if cfg.report_to else None)
    if rng_to_restore is not None:
        set_rng_state(rng_to_restore)

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc="train", disable=not (main and cfg.progress), dynamic_ncols=True)
    orders: dict[int, list[int]] = {}
    last: dict[str, Any] = {}
    resumed_step = step
    model.train()
    while step < total:
        t0 = time.perf_counter()
        lr = scheduler.get_last_lr()[0]
        losses: list[Tensor] = []
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        tokens = 0
        for a in range(cfg.grad_accum):
            epoch, j = divmod(micro, micro_per_epoch)
            if epoch not in orders:
                orders = {epoch: epoch_order(n, epoch, cfg.seed, cfg.shuffle, lengths, global_batch)}
            glob = orders[epoch][j * global_batch:(j + 1) * global_batch]
            batch = source.get(glob[rank * cfg.batch_size:(rank + 1) * cfg.batch_size])
            micro += 1
            sync = contextlib.nullcontext() if a == cfg.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                loss, metrics, n_tok = step_fn(model, batch)
                accelerator.backward(loss / cfg.grad_accum)
            losses.append(loss.detach().float())
            for k, v in metrics.items():  # a key a micro-batch left out is not averaged in as 0
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
            tokens += int(n_tok)
        step_loss = torch.stack(losses).mean()
        finite = bool(torch.isfinite(step_loss))
        grad_norm: float | None = None
        if finite and cfg.max_grad_norm > 0:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
            finite = math.isfinite(grad_norm)
        # Every rank must take the same decision, or DDP would deadlock on the next step.
        finite = _reduce_sum(accelerator, 0.0 if finite else 1.0) == 0.0
        if finite:
            optimizer.step()
            scheduler.step()
            bad_in_row = 0
        else:
            bad_in_row += 1
            skipped += 1
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - t0
        # The loss counts once per process (its mean over micro-batches), as every process reports it.
        record: dict[str, Any] = {"step": step, **_reduce_metrics(accelerator, {"loss": float(step_loss), **sums},
                                                                  {"loss": 1, **counts})}
        record.update(tokens=int(_reduce_sum(accelerator, float(tokens))), seconds=round(seconds, 4), lr=lr)
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        if not finite:
            record["skipped"] = True
        metrics_log.write(record)
        last = record
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens'] / max(seconds, 1e-9):.0f}")
        if bad_in_row >= cfg.max_bad_steps:
            bar.close()
            metrics_log.close()
            raise TrainingError(f"{bad_in_row} optimiser steps in a row had a non-finite loss or gradient "
                                f"(last at step {step}); lower lr, check the data, or raise max_bad_steps")
        if eval_fn is not None and (step == total or (cfg.eval_every and step % cfg.eval_every == 0)):
            model.eval()
            with torch.no_grad():
                ev = eval_fn(model)
            model.train()
            metrics_log.write({"step": step, **{f"eval/{k}": v for k, v in ev.items()}})
            last.update({f"eval/{k}": v for k, v in ev.items()})
        if step == total or (cfg.save_every and step % cfg.save_every == 0):
            from accelerate.utils import gather_object

            rngs = gather_object([rng_state()]) if world > 1 else [rng_state()]
            if main:
                save_checkpoint(ckpt_root, step, raw, optimizer, scheduler,
                                {"micro": micro, "bad_in_row": bad_in_row, "skipped": skipped,
                                 "total_steps": total, "objective_state": dict(state)},
                                lora=lora, rank_rng=dict(enumerate(rngs)), keep=cfg.keep_checkpoints)
            if on_checkpoint is not None:
                on_checkpoint(step)
            accelerator.wait_for_everyone()
    bar.close()
    metrics_log.close()
    if bad_in_row:
        # The loss never recovered: the run must not end as a success, nor `final/` be written (issue #14.12).
        raise TrainingError(f"the last {bad_in_row} optimiser step(s) (up to step {step}) had a non-finite loss or "
                            "gradient and the run never recovered; no final model written. Lower lr, check the "
                            "data, or resume from an earlier checkpoint")
    return LoopResult(step, run_dir, last, skipped, resumed_step, left_out)
