"""Listwise forward+backward throughput: shared-prompt encoding (`shared_prompt: true`) vs repeating the prompt.

One example with K completions of one prompt, for K = 2, 4, 8 and prompt:completion length ratios 1:1 and 4:1,
on the embedded SmolLM2-135M-Instruct (fp32, CPU). Each mode computes the K completions' summed log-probs, sums
them and back-propagates (a training step minus the optimiser). Throughput is *effective* tokens per second: the
tokens of the repeated layout (K·(P + C)), the same count for both modes, so the ratio is the speedup. The
shared mode actually runs P + K·C tokens. Random token ids (the model's vocabulary) stand in for text.

    .venv/bin/python benchmarks/listwise_prefix.py                    # defaults: C = 16, 2 timed reps
    .venv/bin/python benchmarks/listwise_prefix.py --completion 32 --reps 3 --threads 0
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def make_batch(vocab: int, k: int, p: int, c: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (1, p), generator=g)
    comps = torch.randint(0, vocab, (k, c), generator=g)
    return {"prompt": prompt, "comps": comps}


def run_repeated(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> float:
    from alignkit.train.logps import completion_logps

    k, c = b["comps"].shape
    ids = torch.cat([b["prompt"].expand(k, -1), b["comps"]], dim=1)
    labels = ids.clone()
    labels[:, : b["prompt"].shape[1]] = -100
    t0 = time.perf_counter()
    sums = completion_logps(model, ids, torch.ones_like(ids), labels).sums
    sums.sum().backward()
    return time.perf_counter() - t0


def run_shared(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> float:
    from alignkit.train.prefix import shared_prompt_kernel

    k, c = b["comps"].shape
    t0 = time.perf_counter()
    sums, _ = shared_prompt_kernel(model, b["comps"], torch.ones_like(b["comps"]), b["comps"], False,
                                   prompt_ids=b["prompt"], prompt_mask=torch.ones_like(b["prompt"]),
                                   owner=torch.zeros(k, dtype=torch.long))
    sums.sum().backward()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--completion", type=int, default=16, help="completion tokens C (prompt = C or 4C)")
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions per cell (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared CPU more threads oversubscribe; 0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from alignkit.models import load_model

    model, tok = load_model(args.model)
    model.train()
    vocab = len(tok)
    c = args.completion
    print(f"model {args.model}, fp32, torch threads {torch.get_num_threads()}, C = {c}, reps {args.reps}")
    print("| K | P:C | P | effective tokens | repeated tok/s | shared tok/s | speedup |")
    print("|---|---|---|---|---|---|---|")
    for ratio in (1, 4):
        p = ratio * c
        for k in (int(x) for x in args.ks.split(",")):
            b = make_batch(vocab, k, p, c, seed=k * 10 + ratio)
            times: dict[str, list[float]] = {"repeated": [], "shared": []}
            for rep in range(args.reps + 1):
                for name, fn in (("repeated", run_repeated), ("shared", run_shared)):
                    model.zero_grad(set_to_none=True)
                    dt = fn(model, b)
                    if rep:  # the first round warms up allocators and kernels
                        times[name].append(dt)
            eff = k * (p + c)
            rep_t, sh_t = statistics.median(times["repeated"]), statistics.median(times["shared"])
            print(f"| {k} | {ratio}:1 | {p} | {eff} | {eff / rep_t:.0f} | {eff / sh_t:.0f} | {rep_t / sh_t:.2f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
