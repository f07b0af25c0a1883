"""Sampling throughput: HFSampler vs a naive `model.generate` loop and vs CTranslate2 (the reference engine).

    .venv/bin/python benchmarks/sampling.py [--model smollm2-135m-instruct] [--tokens 64] [--threads 1]
        [--rows batch1,batch8,batch32,batch64,n8,stream] [--no-ct2] [--no-naive] [--repeat 1]

Rows (all at temperature 1, no truncation, the same max_new_tokens; tokens/s counts the tokens actually
generated, EOS may end a sequence early on any side):
* `batch1`, `batch8`: k distinct prompts, HFSampler (one batched call) vs a naive loop of `model.generate`;
* `batch32`, `batch64`: k distinct prompts in one batch, HFSampler vs CTranslate2 fp32 `generate_batch` (issue 18
  item 5's target: HFSampler >= CTranslate2 at both), and HFSampler without `share_prompt_prefix` (the prompts'
  common chat-template prefix is encoded once per batch by default; CTranslate2 encodes it per row);
* `n8`: 8 completions of one prompt (naive: `num_return_sequences=8`);
* `stream`: 128 prompts through a 32-row batch: HFSampler in one call (continuous batching: a waiting prompt
  takes a finished row's place) vs four calls of 32 (each waits for its slowest row), and CTranslate2 with
  `max_batch_size=32`.
CTranslate2 (`pip install ctranslate2`) converts the model once to fp32 under `$ALIGNKIT_CACHE/ct2/`; without the
package its columns are left out. The engines run one after another on the same prompts under the same load, so
the ratios are meaningful even on a busy machine; absolute tokens/s need an idle one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from alignkit.decode.hf import HFSampler
from alignkit.models import cache_dir, load_model, prepare_embedded, resolve_local

TOPICS = ["the sea", "a quiet library", "autumn leaves", "a busy kitchen", "mountain trails", "city lights",
          "an old clock", "rainy mornings"]
ROWS = ["batch1", "batch8", "batch32", "batch64", "n8", "stream"]


def prompts(k: int) -> list[str]:
    return [f"Write two sentences about {TOPICS[i % len(TOPICS)]} (variant {i})." for i in range(k)]


def naive(model: Any, tok: Any, ps: list[str], tokens: int, n: int = 1) -> tuple[int, float]:
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


def ours(sampler: HFSampler, ps: list[str], tokens: int, n: int = 1, calls: int = 1, seed: int = 0
         ) -> tuple[int, float]:
    before, t0 = sampler.compute.generated_tokens, time.perf_counter()
    per = -(-len(ps) // calls)
    for start in range(0, len(ps), per):
        sampler.sample(ps[start:start + per], n=n, max_new_tokens=tokens, temperature=1.0, seed=seed + start)
    return sampler.compute.generated_tokens - before, time.perf_counter() - t0


class CT2:
    """CTranslate2 fp32 generator over the same model and prompt tokens (converted once, cached)."""

    def __init__(self, model_spec: str, sampler: HFSampler, threads: int) -> None:
        import ctranslate2

        src = prepare_embedded() if model_spec == "smollm2-135m-instruct" else resolve_local(model_spec)
        out = cache_dir() / "ct2" / Path(str(src)).name
        if not (out / "model.bin").exists():
            ctranslate2.converters.TransformersConverter(str(src)).convert(str(out), quantization="float32",
                                                                          force=True)
        self.gen = ctranslate2.Generator(str(out), device="cpu", compute_type="float32", intra_threads=threads)
        self.sampler = sampler

    def run(self, ps: list[str], tokens: int, n: int = 1, max_batch: int = 0) -> tuple[int, float]:
        tok = self.sampler.tokenizer
        batch = [tok.convert_ids_to_tokens(self.sampler.encode_prompt(p)) for p in ps for _ in range(n)]
        t0 = time.perf_counter()
        res = self.gen.generate_batch(batch, max_length=tokens, sampling_topk=0, sampling_temperature=1.0,
                                      include_prompt_in_result=False, return_end_token=True,
                                      max_batch_size=max_batch)
        seconds = time.perf_counter() - t0
        lengths = [len(r.sequences_ids[0]) for r in res]  # the end token counts, as on the other engines
        if max(lengths) > tokens:
            raise SystemExit(f"CTranslate2 generated {max(lengths)} > {tokens} tokens: max_length semantics changed")
        return sum(lengths), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    ap.add_argument("--no-ct2", action="store_true", help="leave CTranslate2 out")
    ap.add_argument("--no-naive", action="store_true", help="leave the naive generate loop out")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions per row (3+: a 95%% interval on each ratio)")
    args = ap.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {ROWS}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_model(args.model)
    sampler = HFSampler(model, tok)
    ct2 = None
    if not args.no_ct2:
        try:
            ct2 = CT2(args.model, sampler, args.threads)
        except ImportError:
            print("ctranslate2 is not installed (pip install ctranslate2): its columns are left out")
    ours(sampler, prompts(2), 4)  # warm-up
    if ct2 is not None:
        ct2.run(prompts(2), 4)
    table = []
    for label in rows:
        k, n = {"batch1": (1, 1), "batch8": (8, 1), "batch32": (32, 1), "batch64": (64, 1), "n8": (1, 8),
                "stream": (128, 1)}[label]
        runs: dict[str, list[tuple[int, float]]] = {}
        for rep in range(args.repeat):  # engines interleaved within each repetition, so load drifts hit all
            for name, cell in measure(label, k, n, rep, args, sampler, ct2, model, tok).items():
                g, t = cell  # tok/seq shows that every engine got the same budget
                print(f"{label} #{rep + 1}: {name} {g} tok ({g / (k * n):.1f} tok/seq) in {t:.1f}s = {g / t:.1f} tok/s",
                      flush=True)
                runs.setdefault(name, []).append(cell)
        table.append((label, {name: [g / t for g, t in cells] for name, cells in runs.items()}))
    print(f"\nmodel {args.model}, {args.tokens} new tokens, {args.threads} threads, CPU, {args.repeat} repetition(s)")
    print("| setting | engine | tok/s | HFSampler / engine |")
    print("|---|---|---|---|")
    for label, per_engine in table:
        mine = per_engine["HFSampler"]
        for name, v in per_engine.items():
            ratio = "" if name == "HFSampler" else ratio_cell(mine, v)
            print(f"| {label} | {name} | {sum(v) / len(v):.1f} | {ratio} |")


def measure(label: str, k: int, n: int, rep: int, args: argparse.Namespace, sampler: HFSampler, ct2: CT2 | None,
            model: Any, tok: Any) -> dict[str, tuple[int, float]]:
    """One repetition of a row: (tokens generated, seconds) per engine."""
    cells: dict[str, tuple[int, float]] = {}
    seed = 1000 * rep
    if label == "stream":
        sampler.max_batch_rows = 32
        cells["HFSampler, 4 calls of 32"] = ours(sampler, prompts(k), args.tokens, calls=4, seed=seed)
        cells["HFSampler"] = ours(sampler, prompts(k), args.tokens, seed=seed)
        sampler.max_batch_rows = 64
        if ct2 is not None:
            cells["CTranslate2"] = ct2.run(prompts(k), args.tokens, max_batch=32)
        return cells
    cells["HFSampler"] = ours(sampler, prompts(k), args.tokens, n, seed=seed)
    if k >= 32:  # the same without encoding the prompts' common prefix (system turn) once
        sampler.share_prompt_prefix = False
        cells["HFSampler, no prefix sharing"] = ours(sampler, prompts(k), args.tokens, n, seed=seed)
        sampler.share_prompt_prefix = True
    if ct2 is not None and k >= 32:
        cells["CTranslate2"] = ct2.run(prompts(k), args.tokens, n)
    if not args.no_naive and k < 32:
        cells["naive generate loop"] = naive(model, tok, prompts(k), args.tokens, n)
    return cells


def ratio_cell(mine: list[float], other: list[float]) -> str:
    """Geometric mean of the per-repetition ratios, with a 95% t-interval over repetitions when there are 3+."""
    import math

    logs = [math.log(a / b) for a, b in zip(mine, other, strict=True)]
    mean = sum(logs) / len(logs)
    if len(logs) < 3:
        return f"{math.exp(mean):.2f}x"
    from scipy import stats

    lo, hi = stats.t.interval(0.95, len(logs) - 1, loc=mean, scale=stats.sem(logs))
    return f"{math.exp(mean):.2f}x [{math.exp(lo):.2f}, {math.exp(hi):.2f}]"


if __name__ == "__main__":
    main()
