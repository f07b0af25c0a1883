"""The test-time frontier (issue 18, item 6): reward vs generated tokens and vs forward tokens, one run.

    .venv/bin/python benchmarks/frontier.py [--prompts 16] [--tokens 48] [--policy NAME=MODEL_DIR ...]

Same prompts (the first P of the constraint suite's test split), same reward (`csr`), same token budget for:
plain sampling, best-of-N (N = 1 … max_n from one set of samples), QAlign (one chain, read off at t = 1, 2, 4 …),
DeAL (one setting), speculative rejection (`--sr-keep` values at `--sr-checkpoints`, n = max_n), and each trained
policy given with `--policy` (one sample per prompt at temperature 1: the policies of the efficacy issue, e.g.
`--policy dpo=runs/efficacy/dpo/final`). The search strategies run on one `HFSampler` with the prefix KV cache on
(`--cache-mb`), so their forward tokens are what a cached sampler really processes; `cached tok/prompt` is what
the cache saved. The sampling / best-of-N / QAlign / DeAL accounting is that of benchmarks/testtime.py (whose
functions this script reuses); speculative rejection's compute is its own record (every partial sample, the
continuations, one reward call per partial score and per complete candidate).

Writes: the table (stdout and the `## Test-time frontier` section of docs/benchmarks.md between its markers),
`docs/frontier_benchmark.png` (two panels, log x), and one run directory per method under --runs-dir
(samples.jsonl rows with `strategy`, `budget`, `reward`, `compute`) for `alignkit report`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from alignkit.data.suite import load_suite
from alignkit.decode.common import score
from alignkit.decode.hf import HFSampler
from alignkit.decode.spec_reject import spec_reject
from alignkit.evaluate.stats import paired_bootstrap
from alignkit.models import load_model
from alignkit.rewards.registry import load_reward
from testtime import Point, _uptime, markdown_table, run_bon, run_deal, run_qalign, write_runs

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Test-time frontier"
BEGIN, END = "<!-- frontier-benchmark:begin (written by benchmarks/frontier.py) -->", "<!-- frontier-benchmark:end -->"


def run_spec_reject(sampler: HFSampler, reward: Any, prompts: list[Any], contexts: list[dict],
                    args: argparse.Namespace) -> list[Point]:
    points = []
    cps = [int(c) for c in args.sr_checkpoints.split(",") if c.strip()]
    for keep in (float(k) for k in args.sr_keep.split(",") if k.strip()):
        t0 = time.perf_counter()
        res = spec_reject(sampler, reward, prompts, n=args.max_n, checkpoints=cps, keep=keep,
                          max_new_tokens=args.tokens, seed=args.seed, contexts=contexts)
        seconds = time.perf_counter() - t0
        points.append(Point(f"spec-reject keep={keep:g}", args.max_n, [r.info["selected_reward"] for r in res],
                            [r.compute for r in res], seconds, [r.completion for r in res],
                            {"note": f"checkpoints {cps}"}))
    return points


def run_policies(specs: list[str], reward: Any, prompts: list[Any], contexts: list[dict],
                 args: argparse.Namespace) -> list[Point]:
    points = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--policy takes NAME=MODEL_DIR, got {spec!r}")
        model, tok = load_model(path)
        s = HFSampler(model, tok, max_batch_rows=args.sample_rows)
        t0 = time.perf_counter()
        rows = s.sample(prompts, n=1, max_new_tokens=args.tokens, temperature=1.0, seed=args.seed)
        texts = [r[0].text for r in rows]
        rewards = score(reward, prompts, texts, contexts)
        comps = [r[0].compute for r in rows]
        for c in comps:
            c.reward_calls = 0  # a trained policy needs no reward at test time
        points.append(Point(f"policy {name}", 1, rewards, comps, time.perf_counter() - t0, texts,
                            {"note": path}))
    return points


def table(points: list[Point]) -> str:
    header = ["method", "budget", "prompts", "mean reward [95% CI]", "gen tok/prompt", "fwd tok/prompt",
              "cached tok/prompt", "reward calls/prompt", "seconds", "note"]
    body = []
    for p in points:
        e = p.estimate
        body.append([p.method, str(p.budget), str(len(p.rewards)), f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]",
                     f"{p.per_prompt('generated_tokens'):.0f}", f"{p.per_prompt('forward_tokens'):.0f}",
                     f"{p.per_prompt('cached_tokens'):.0f}", f"{p.per_prompt('reward_calls'):.0f}",
                     f"{p.seconds:.0f}", str(p.extra.get("note", ""))])
    return markdown_table(header, body)


def paired_table(points: list[Point], ref_budget: int) -> str:
    """Each method's point minus best-of-`ref_budget` on the same prompts: the paired-bootstrap difference of mean
    reward (prompts resampled jointly, so the prompts' shared difficulty cancels) and the compute as a share of the
    reference's. Points on another prompt set (DeAL's first few) and the best-of-N curve itself are left out."""
    ref = next((p for p in points if p.method == "best-of-N" and p.budget == ref_budget), None)
    if ref is None:
        return ""
    header = ["method", "budget", f"Δ mean reward vs best-of-{ref_budget} [95% CI]", "gen tokens", "fwd tokens"]
    body = []
    for p in points:
        if p.method == "best-of-N" or len(p.rewards) != len(ref.rewards):
            continue
        d = paired_bootstrap(p.rewards, ref.rewards, seed=0)
        share = [p.per_prompt(k) / ref.per_prompt(k) for k in ("generated_tokens", "forward_tokens")]
        body.append([p.method, str(p.budget), f"{d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]",
                     f"{share[0]:.0%}", f"{share[1]:.0%}"])
    return markdown_table(header, body)


def plot(points: list[Point], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.method, []).append(p)
    for ax, key, label in zip(axes, ("generated_tokens", "forward_tokens"),
                              ("generated tokens per prompt (log)", "forward tokens per prompt (log)"), strict=True):
        markers = iter("os^Dv<>PX*hH")
        for method, pts in groups.items():
            xs = [p.per_prompt(key) for p in pts]
            est = [p.estimate for p in pts]
            err = [[e.value - e.low for e in est], [e.high - e.value for e in est]]
            ax.errorbar(xs, [e.value for e in est], yerr=err, marker=next(markers, "o"), capsize=3,
                        ls="-" if len(pts) > 1 else "none", label=method)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("csr reward (mean, 95% bootstrap CI)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_doc(doc: Path, content: str) -> None:
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{content.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    doc.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--max-n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--deal-prompts", type=int, default=16)
    ap.add_argument("--deal-top-k", type=int, default=2)
    ap.add_argument("--deal-beam", type=int, default=2)
    ap.add_argument("--deal-lookahead", type=int, default=4)
    ap.add_argument("--deal-lam", type=float, default=10.0)
    ap.add_argument("--sr-checkpoints", default="8,16", help="speculative rejection checkpoints (tokens)")
    ap.add_argument("--sr-keep", default="0.25,0.125", help="kept fractions to run (one point each)")
    ap.add_argument("--policy", action="append", default=[], metavar="NAME=MODEL_DIR")
    ap.add_argument("--methods", default="bon,qalign,deal,spec_reject")
    ap.add_argument("--cache-mb", type=float, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sample-rows", type=int, default=64)
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "frontier_benchmark.png")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "frontier_benchmark")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    unknown = methods - {"bon", "qalign", "deal", "spec_reject"}
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}")
    load_before, t_start = _uptime(), time.perf_counter()
    model, tok = load_model(args.model)
    sampler = HFSampler(model, tok, max_batch_rows=args.sample_rows, prefix_cache_mb=args.cache_mb)
    reward = load_reward("csr")
    suite = load_suite("test")[:args.prompts]
    prompts = [e.prompt for e in suite]
    contexts = [{"constraints": e.constraints} for e in suite]
    ids = [e.metadata["id"] for e in suite]
    points: list[Point] = []
    runners = {"bon": run_bon, "qalign": run_qalign, "deal": run_deal, "spec_reject": run_spec_reject}
    for name, run in runners.items():
        if name in methods:
            if sampler.prefix_cache is not None:  # every method starts cold: no KV left by the one before
                sampler.prefix_cache.clear()
            points += run(sampler, reward, prompts, contexts, args)
    points += run_policies(args.policy, reward, prompts, contexts, args)
    wall, load_after = time.perf_counter() - t_start, _uptime()
    md = table(points)
    paired = paired_table(points, args.max_n)
    print(md, paired, sep="\n\n")
    print(f"\nwall time {wall:.0f} s; load before: {load_before}; after: {load_after}")
    runs = write_runs(points, ids, prompts, args.runs_dir, args)
    print("run directories:", " ".join(str(r) for r in runs))
    if args.no_doc:
        return
    plot(points, args.plot, f"{args.model}, {len(prompts)} suite test prompts, {args.tokens} new tokens, csr")
    command = " ".join(["python benchmarks/frontier.py", *map(shlex.quote, sys.argv[1:])])
    rel = " ".join(str(r.relative_to(ROOT)) if r.is_relative_to(ROOT) else str(r) for r in runs)
    update_doc(args.doc, f"""```
.venv/bin/{command}
.venv/bin/alignkit report {rel} -o runs/frontier_benchmark/report.html   # optional
```

Setting: {args.model} (fp32, CPU, {args.threads} torch thread(s)), prefix cache {args.cache_mb:g} MiB; the first \
{len(prompts)} prompts of the suite's test split; at most {args.tokens} new tokens; temperature 1; seed {args.seed}; \
QAlign β = {args.beta}; DeAL top_k = {args.deal_top_k}, beam = {args.deal_beam}, lookahead = {args.deal_lookahead}, \
λ = {args.deal_lam}; speculative rejection n = {args.max_n}, checkpoints {args.sr_checkpoints}. Wall time {wall:.0f} s \
(`uptime` load before: {load_before}; after: {load_after}).

{md}

Paired, on the same prompts:

{paired}

![reward vs generated and forward tokens](frontier_benchmark.png)
""")
    print(f"wrote {args.plot} and the '{SECTION}' section of {args.doc}")


if __name__ == "__main__":
    main()
