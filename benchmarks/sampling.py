"""Sampling throughput: HFSampler (batched, KV cache, left padding, one prompt encoding for n samples) vs a naive
loop that calls `model.generate` once per prompt. Prints generated tokens/s and the ratio.

    .venv/bin/python benchmarks/sampling.py [--model smollm2-135m-instruct] [--tokens 32] [--threads 2]

Both sides sample at temperature 1 with the same max_new_tokens; tokens/s counts the tokens actually generated
(EOS may end a sequence early on either side). Timing rows use distinct prompts; the `n=8` row samples 8
completions of one prompt (naive: `num_return_sequences=8`).
"""

from __future__ import annotations

import argparse
import time

import torch

from alignkit.decode.hf import HFSampler
from alignkit.models import load_model

TOPICS = ["the sea", "a quiet library", "autumn leaves", "a busy kitchen", "mountain trails", "city lights",
          "an old clock", "rainy mornings"]


def prompts(k: int) -> list[str]:
    return [f"Write two sentences about {TOPICS[i % len(TOPICS)]} (variant {i})." for i in range(k)]


def naive(model, tok, ps: list[str], tokens: int, n: int = 1) -> tuple[int, float]:
    generated, t0 = 0, time.perf_counter()
    for p in ps:
        text = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=tokens, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 num_return_sequences=n, pad_token_id=tok.pad_token_id)
        for row in out[:, ids["input_ids"].shape[1]:]:
            row = row.tolist()
            generated += next((i + 1 for i, t in enumerate(row) if t == tok.eos_token_id), len(row))
    return generated, time.perf_counter() - t0


def ours(sampler: HFSampler, ps: list[str], tokens: int, n: int = 1) -> tuple[int, float]:
    before, t0 = sampler.compute.generated_tokens, time.perf_counter()
    sampler.sample(ps, n=n, max_new_tokens=tokens, temperature=1.0, seed=0)
    return sampler.compute.generated_tokens - before, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_model(args.model)
    sampler = HFSampler(model, tok)
    ours(sampler, prompts(2), 4)  # warm-up
    naive(model, tok, prompts(1), 4)
    rows = []
    for label, k, n in [("batch 1", 1, 1), ("batch 8", 8, 1), ("batch 32", 32, 1), ("1 prompt, n=8", 1, 8)]:
        g_n, t_n = naive(model, tok, prompts(k), args.tokens, n)
        g_o, t_o = ours(sampler, prompts(k), args.tokens, n)
        rows.append((label, g_n / t_n, g_o / t_o))
        print(f"{label}: naive {g_n} tok in {t_n:.1f}s, HFSampler {g_o} tok in {t_o:.1f}s", flush=True)
    print(f"\nmodel {args.model}, {args.tokens} new tokens, {args.threads} threads, CPU")
    print("| setting | naive generate loop (tok/s) | HFSampler (tok/s) | ratio |")
    print("|---|---|---|---|")
    for label, a, b in rows:
        print(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
