"""A/B of HFSampler's decode loop against the loop of an earlier commit, in one process, alternating, on the same
prompts and seeds (so the samples must be identical and only the time differs).

    .venv/bin/python benchmarks/decode_ab.py --ref 1d2f297 --prompts 64 --n 4 --tokens 64 --rows 128

`--ref` is any git revision whose `src/alignkit/decode/hf_loop.py` has the same `generate` signature.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import alignkit.decode.hf as hf
from alignkit.data.build.common import load_prompts
from alignkit.decode import hf_loop
from alignkit.models import load_model


def _loop_at(ref: str) -> object:
    src = subprocess.run(["git", "show", f"{ref}:src/alignkit/decode/hf_loop.py"], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parent.parent).stdout
    path = Path(tempfile.mkdtemp()) / "hf_loop_ref.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("hf_loop_ref", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    prompts = [p.prompt for p in load_prompts("suite:train")[: args.prompts]]
    impls = {args.ref: _loop_at(args.ref).generate, "HEAD": hf_loop.generate}  # type: ignore[attr-defined]
    seconds: dict[str, list[float]] = {k: [] for k in impls}
    tokens: dict[str, list[list[int]]] = {}
    for _ in range(args.reps):
        for name, fn in impls.items():
            hf.generate = fn  # HFSampler._generate calls the module-level name
            sampler = hf.HFSampler(model, tokenizer, max_batch_rows=args.rows)
            t0 = time.perf_counter()
            out = sampler.sample(prompts, n=args.n, max_new_tokens=args.tokens, temperature=1.0, seed=0)
            seconds[name].append(time.perf_counter() - t0)
            tokens[name] = [s.token_ids for row in out for s in row]
    generated = sum(len(t) for t in tokens["HEAD"])
    same = sum(a == b for a, b in zip(tokens[args.ref], tokens["HEAD"], strict=True))
    print(f"{len(prompts)} prompts x n={args.n}, {args.tokens} tokens, {args.rows} rows, {generated} tokens generated")
    for name, ts in seconds.items():
        best = min(ts)
        print(f"{name:>10}: {best:.1f} s  {generated / best:.1f} tok/s  (runs: {', '.join(f'{t:.1f}' for t in ts)})")
    print(f"speed-up {min(seconds[args.ref]) / min(seconds['HEAD']):.2f}x; identical samples {same}/{len(tokens['HEAD'])}")
    sys.exit(0 if same == len(tokens["HEAD"]) else 1)


if __name__ == "__main__":
    main()
