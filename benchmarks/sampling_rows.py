"""Tokens/s of HFSampler by rows per forward pass, as the recipe and eval use it (n=4 samples per prompt,
192-token budget, temperature 1, suite:train prompts). Picks `gen_batch_size` for recipes/constraints.yaml.

    .venv/bin/python benchmarks/sampling_rows.py --rows 32,128,256 [--threads 2]

Each setting samples rows/4 prompts once; prints generated tokens, seconds, tokens/s and seconds per prompt.
"""

from __future__ import annotations

import argparse
import time

import torch

from alignkit.data.build.common import load_prompts
from alignkit.decode.hf import HFSampler
from alignkit.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rows", default="32,128,256")
    ap.add_argument("--tokens", type=int, default=192)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    rows_list = [int(r) for r in args.rows.split(",")]
    prompts = [p.prompt for p in load_prompts("suite:train")[: max(rows_list) // 4]]
    print("| rows per forward | prompts x 4 | tokens | seconds | tokens/s | s per prompt |\n|---|---|---|---|---|---|")
    for rows in rows_list:
        sampler = HFSampler(model, tokenizer, max_batch_rows=rows)
        sampler.sample(prompts[:2], n=1, max_new_tokens=4)  # warm-up
        k = rows // 4
        t0 = time.perf_counter()
        out = sampler.sample(prompts[:k], n=4, max_new_tokens=args.tokens, temperature=1.0, seed=0)
        dt = time.perf_counter() - t0
        n = sum(len(s.token_ids) for row in out for s in row)
        print(f"| {rows} | {k} x 4 | {n} | {dt:.1f} | {n / dt:.0f} | {dt / k:.2f} |", flush=True)


if __name__ == "__main__":
    main()
