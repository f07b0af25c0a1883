"""DPO training throughput and peak memory: alignkit's engine vs TRL 1.16's DPOTrainer, in one invocation.

Same model (the embedded SmolLM2-135M-Instruct, fp32), the same synthetic pairs, batch 4, the same number of
optimiser steps. Every side runs in its own fresh subprocess (so peak RSS is separable), alternating TRL and the
alignkit reference modes round by round. Timing covers the optimiser steps only (model loading, tokenisation,
checkpoint/model writing excluded); alignkit's `precompute` pass is reported separately and also folded into an
end-to-end figure.

    .venv/bin/python benchmarks/dpo_vs_trl.py                       # defaults: 6 steps, 1 round
    .venv/bin/python benchmarks/dpo_vs_trl.py --steps 8 --rounds 2 --modes separate,precompute,adapter
    .venv/bin/python benchmarks/dpo_vs_trl.py --modes separate,separate+offload+lowmem,precompute,adapter

Both sides count tokens the same way: non-padding tokens of the policy forward (prompt + completion, chosen and
rejected); TRL's own `num_tokens` metric uses the same definition. TRL runs twice: with its defaults (`trl`: on
CPU that is bf16 autocast, `bf16=True`) and with `bf16=False` (`trl-fp32`), the like-for-like fp32 comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


FLAGS = {"offload": {"reference_offload": True}, "ckpt": {"gradient_checkpointing": True},
         "shared": {"shared_prompt": True}, "lowmem": {"low_memory_allocator": True}}


def worker_alignkit(side: str, steps: int, pairs: int, batch: int, threads: int, out: Path) -> dict:
    """`side` is a reference mode with optional `+flag`s from FLAGS, e.g. `separate+offload+shared`."""
    import torch

    mode, *flags = side.split("+")
    extra = {k: v for f in flags for k, v in FLAGS[f].items()}

    torch.set_num_threads(threads)
    from alignkit.models import LoraConfig
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train
    from alignkit.train.synthetic import synthetic_pairs

    lora = LoraConfig(r=16, alpha=32) if mode == "adapter" else LoraConfig()
    cache = Path(tempfile.mkdtemp(prefix="ak-refcache-"))
    if mode == "precompute":  # a cold cache: the one-time reference pass is measured, not reused
        import alignkit.train.reference as reference

        reference.cache_dir = lambda: cache  # type: ignore[assignment]
    cfg = TrainConfig(model="smollm2-135m-instruct", data="<synthetic>", objective="dpo", output_dir=str(out),
                      batch_size=batch, max_steps=steps, lr=5e-6 if mode != "adapter" else 1e-4,
                      reference=mode, lora=lora, torch_threads=threads, progress=False, max_length=512,
                      save_every=0, keep_checkpoints=1, **extra)
    stamps: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    train(cfg, records=synthetic_pairs(pairs), log=lambda m: stamps.append((time.perf_counter(), m)))
    wall = time.perf_counter() - t0
    # The reference pass runs between the data summary and the "objective ..., reference: ..." line.
    t_data = next(t for t, m in stamps if m.startswith("train data"))
    t_ready = next(t for t, m in stamps if m.startswith("objective "))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    seconds = sum(r["seconds"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    return {"side": f"alignkit/{side}", "steps": len(rows), "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "wall_incl_setup_s": wall, "peak_rss_gb": peak_rss_gb(),
            "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"], "setup_reference_s": t_ready - t_data}


def worker_trl(steps: int, pairs: int, batch: int, threads: int, out: Path, fp32: bool) -> dict:
    import logging
    import warnings

    import torch

    warnings.simplefilter("ignore")
    logging.getLogger("trl").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from alignkit.models import load_model
    from alignkit.train.synthetic import synthetic_pairs

    model, tok = load_model("smollm2-135m-instruct")
    ref, _ = load_model("smollm2-135m-instruct")
    rows = [{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in synthetic_pairs(pairs)]

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.t = 0.0, 0.0

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003
            self.seconds += time.perf_counter() - self.t

    timer = Timer()
    args = DPOConfig(output_dir=str(out), report_to="none", per_device_train_batch_size=batch, max_steps=steps,
                     learning_rate=5e-6, beta=0.1, use_cpu=True, save_strategy="no", logging_steps=1,
                     max_length=512, dataloader_num_workers=0, disable_tqdm=True, seed=0,
                     **({"bf16": False} if fp32 else {}))
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, callbacks=[timer])
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = int(trainer._total_train_tokens)
    return {"side": "trl-fp32" if fp32 else "trl", "steps": steps, "tokens": tokens, "seconds": timer.seconds,
            "tokens_per_s": tokens / timer.seconds, "wall_incl_setup_s": wall, "peak_rss_gb": peak_rss_gb(),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def run_side(side: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--steps", str(args.steps), "--pairs", str(args.pairs),
           "--batch", str(args.batch), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-4000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--modes", default="separate,precompute,adapter")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        out = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
        if args.worker in ("trl", "trl-fp32"):
            res = worker_trl(args.steps, args.pairs, args.batch, args.threads, out, fp32=args.worker == "trl-fp32")
        else:
            res = worker_alignkit(args.worker.split("/", 1)[1], args.steps, args.pairs, args.batch, args.threads,
                                  out)
        print("RESULT " + json.dumps(res), flush=True)
        return
    sides = ["trl", "trl-fp32"] + [f"alignkit/{m}" for m in args.modes.split(",") if m]
    results: dict[str, list[dict]] = {s: [] for s in sides}
    load = os.getloadavg()[0]
    print(f"# {args.steps} steps × batch {args.batch}, {args.pairs} pairs, {args.threads} threads, "
          f"load average at start {load:.1f}")
    for r in range(args.rounds):
        for side in sides:
            res = run_side(side, args)
            results[side].append(res)
            print(f"round {r + 1} {side:22s} {res['tokens_per_s']:7.1f} tok/s  peak RSS {res['peak_rss_gb']:.2f} GB"
                  f"  ({res['tokens']} tokens in {res['seconds']:.1f} s; loss {res['first_loss']:.4f} → "
                  f"{res['last_loss']:.4f}; reference setup {res.get('setup_reference_s', 0):.1f} s)", flush=True)
    best = {s: max(rs, key=lambda x: x["tokens_per_s"]) for s, rs in results.items()}
    trl, t32 = best["trl"], best["trl-fp32"]
    print("\n| side | tokens/s | × TRL (default) | × TRL (fp32) | peak RSS GB | × TRL (default) | × TRL (fp32) |")
    print("|---|---|---|---|---|---|---|")
    for s, b in best.items():
        print(f"| {s} | {b['tokens_per_s']:.1f} | {b['tokens_per_s'] / trl['tokens_per_s']:.2f} | "
              f"{b['tokens_per_s'] / t32['tokens_per_s']:.2f} | {b['peak_rss_gb']:.2f} | "
              f"{b['peak_rss_gb'] / trl['peak_rss_gb']:.2f} | {b['peak_rss_gb'] / t32['peak_rss_gb']:.2f} |")
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
