"""Test-time alignment: reward vs compute on the embedded model and the constraint suite (spec A1, A2, A3, C1).

    .venv/bin/python benchmarks/testtime.py [--prompts 8] [--tokens 32] [--max-n 16] [--steps 16]

The defaults fit ~11 minutes on the shared 2-core CPU (load ~7); `--prompts 16 --tokens 48 --deal-prompts 16
--deal-top-k 4 --deal-lookahead 8` is the fuller setting for an idle machine (several times longer, DeAL dominating).

Policy: `smollm2-135m-instruct` (chat template), prompts: the first P prompts of the constraint suite's test
split, reward: the `csr` verifier (fraction of the prompt's constraints followed; context `{"constraints"}`).
Methods, all from `alignkit.decode` through the Sampler protocol with fixed seeds:

* plain sampling at temperature 1: the mean reward of the max_n draws per prompt (the expected reward of one
  sample), compute = the cost of one draw (prompt encoding + the mean draw's tokens);
* best-of-N for N = 1, 2, 4, …, max_n: ONE set of max_n samples per prompt (`best_of_n` with n = max_n); BoN-N
  is the best of the first N (ties to the first). Compute at N = the sum of the first N samples' own compute
  records (each sample's tokens; the shared prompt encoding is charged once, to sample 0), i.e. N x the
  per-sample cost, exactly what an n=N call spends; reward calls = N; seconds = N/max_n of the sampling time
  plus the scoring of N samples (pro rata, approximate);
* QAlign (`select_by="last"`): one chain of `steps` MH steps per prompt (β from --beta); QAlign-t is the chain
  state after t steps, read off the one chain (t = 1, 2, 4, …). Compute at t = the initial sample + the first t
  suffix proposals (recorded per prompt by a sampler proxy); seconds = wall time to the end of step t;
  acceptance = accepted proposals among the first t (a proposal counts as accepted when the next state is it);
* DeAL: one small setting (top_k, beam, lookahead from the flags; λ from --deal-lam), on the first
  `--deal-prompts` prompts (DeAL is by far the heaviest method, C1).

Prints a table (method, budget, mean reward with a 95% bootstrap CI over prompts, generated and forward tokens
per prompt, reward calls per prompt, seconds), saves the reward-vs-generated-tokens plot (log x), writes the
section `## Test-time alignment: reward vs compute` of docs/benchmarks.md (between its markers; text after the
end marker is kept), and one run directory per method under --runs-dir (samples.jsonl rows with `strategy`,
`budget`, `reward`, `compute`) for `alignkit report`.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from alignkit.data.suite import load_suite
from alignkit.decode.common import score
from alignkit.decode.deal import deal
from alignkit.decode.hf import HFSampler
from alignkit.decode.qalign import qalign
from alignkit.decode.sampler import Compute, Prefix, Sample
from alignkit.evaluate.stats import Estimate, mean_ci
from alignkit.models import load_model
from alignkit.rewards.registry import load_reward

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Test-time alignment: reward vs compute"
BEGIN, END = "<!-- testtime-benchmark:begin (written by benchmarks/testtime.py) -->", "<!-- testtime-benchmark:end -->"


@dataclass
class Point:
    method: str
    budget: int
    rewards: list[float]  # one per prompt
    computes: list[Compute]  # one per prompt
    seconds: float
    completions: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def estimate(self) -> Estimate:
        return mean_ci(self.rewards, seed=0)

    def per_prompt(self, key: str) -> float:
        return sum(getattr(c, key) for c in self.computes) / len(self.computes)


def powers_of_two(top: int) -> list[int]:
    out, k = [], 1
    while k <= top:
        out.append(k)
        k *= 2
    return out


class TimedReward:
    """Forwards to a reward and records when each call ended (QAlign: call 0 = initial states, call t = step t);
    advances a progress bar per call."""

    def __init__(self, reward: Any, bar: tqdm | None = None) -> None:
        self.reward, self.bar, self.ends = reward, bar, []
        self.name = getattr(reward, "name", "reward")

    def __call__(self, prompts: Sequence[Any], completions: Sequence[str], **context: Any) -> Any:
        out = self.reward(prompts, completions, **context)
        self.ends.append(time.perf_counter())
        if self.bar is not None:
            self.bar.update(1)
        return out


class RecordingSampler:
    """A sampler proxy that remembers, per prompt (by its position in `prompts`), every extend row in call order,
    so QAlign's per-step compute and proposals can be read back per prompt."""

    def __init__(self, inner: HFSampler, prompts: Sequence[Any]) -> None:
        self.inner = inner
        self.index = {p: i for i, p in enumerate(prompts)}
        if len(self.index) != len(prompts):
            raise SystemExit("benchmark prompts must be distinct (the proxy maps each prompt to its row)")
        self.extends: list[list[tuple[list[int], Sample]]] = [[] for _ in prompts]  # (prefix ids, sample)

    @property
    def compute(self) -> Compute:
        return self.inner.compute

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def sample(self, prompts: Sequence[Any], *args: Any, **kwargs: Any) -> list[list[Sample]]:
        return self.inner.sample(prompts, *args, **kwargs)

    def extend(self, prompts: Sequence[Any], prefixes: Sequence[Prefix], *args: Any, **kwargs: Any) -> list[Sample]:
        out = self.inner.extend(prompts, prefixes, *args, **kwargs)
        for p, pre, o in zip(prompts, prefixes, out, strict=True):
            self.extends[self.index[p]].append((list(pre), o))
        return out


# ------------------------------------------------------------------------------------------------------ methods
def run_bon(sampler: HFSampler, reward: Any, prompts: list[Any], contexts: list[dict], args: argparse.Namespace
            ) -> list[Point]:
    n, chunk = args.max_n, max(1, args.sample_rows // args.max_n)
    rows: list[list[Sample]] = []
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(prompts), chunk), desc=f"sampling {n} per prompt", unit="batch"):
        # the seed depends on the batch start so every prompt gets its own random streams
        rows += sampler.sample(prompts[start:start + chunk], n=n, max_new_tokens=args.tokens, temperature=1.0,
                               seed=args.seed * 100_003 + start)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    flat = score(reward, [p for p in prompts for _ in range(n)], [s.text for row in rows for s in row],
                 [c for c in contexts for _ in range(n)])
    t_score = time.perf_counter() - t0
    scores = [flat[i * n:(i + 1) * n] for i in range(len(prompts))]
    points = []
    plain_compute = []
    for row in rows:
        # one draw costs the prompt encoding (charged to sample 0) plus the mean draw's own tokens
        prompt_fwd = sum(s.forward_tokens - max(0, len(s.token_ids) - 1) for s in row)
        mean_gen = sum(len(s.token_ids) for s in row) / n
        plain_compute.append(Compute(round(prompt_fwd + max(0.0, mean_gen - 1)), round(mean_gen), 1))
    points.append(Point("sample (T=1)", 1, [sum(s) / n for s in scores], plain_compute,
                        (t_sample + t_score) / n, [row[0].text for row in rows],
                        {"note": f"mean of {n} draws per prompt"}))
    for budget in powers_of_two(n):
        comps, rewards, texts = [], [], []
        for row, sc in zip(rows, scores, strict=True):
            c = Compute()
            for s in row[:budget]:
                c.add(s.compute)
            c.reward_calls = budget
            best = max(range(budget), key=lambda j, sc=sc: (sc[j], -j))
            comps.append(c)
            rewards.append(sc[best])
            texts.append(row[best].text)
        points.append(Point("best-of-N", budget, rewards, comps, (t_sample + t_score) * budget / n, texts))
    return points


def run_qalign(sampler: HFSampler, reward: Any, prompts: list[Any], contexts: list[dict],
               args: argparse.Namespace) -> list[Point]:
    proxy = RecordingSampler(sampler, prompts)
    bar = tqdm(total=args.steps + 1, desc=f"qalign ({args.steps} steps)", unit="step")
    timed = TimedReward(reward, bar)
    t0 = time.perf_counter()
    init_before = sampler.compute.copy()
    results = qalign(proxy, timed, prompts, steps=args.steps, beta=args.beta, max_new_tokens=args.tokens,
                     select_by="last", seed=args.seed, contexts=contexts)
    bar.close()
    points = []
    for t in powers_of_two(args.steps):
        comps, rewards, texts, acc = [], [], [], []
        for k, r in enumerate(results):
            props = proxy.extends[k]
            assert len(props) == args.steps, "one proposal per prompt per step"
            step_cost = Compute()
            accepted = 0
            for step, (pre, o) in enumerate(props[:t], start=1):
                step_cost.add(o.compute)
                accepted += r.info["chain_texts"][step] == sampler.decode(pre) + o.text
            init = r.compute.minus(_sum(o.compute for _, o in props))  # the initial sample's share
            c = Compute(init.forward_tokens + step_cost.forward_tokens,
                        init.generated_tokens + step_cost.generated_tokens, t + 1,
                        init.cached_tokens + step_cost.cached_tokens)
            comps.append(c)
            rewards.append(r.info["chain_rewards"][t])
            texts.append(r.info["chain_texts"][t])
            acc.append(accepted / t)
        points.append(Point("QAlign", t, rewards, comps, timed.ends[t] - t0, texts,
                            {"acceptance": sum(acc) / len(acc)}))
    total = sampler.compute.minus(init_before)
    assert total.forward_tokens == sum(r.compute.forward_tokens for r in results), "QAlign accounting drifted"
    final_acc = sum(r.info["acceptance_rate"] for r in results) / len(results)
    points[-1].extra["acceptance_reported"] = final_acc
    return points


def _sum(items: Any) -> Compute:
    c = Compute()
    for x in items:
        c.add(x)
    return c


def run_deal(sampler: HFSampler, reward: Any, prompts: list[Any], contexts: list[dict],
             args: argparse.Namespace) -> list[Point]:
    k = min(args.deal_prompts, len(prompts))
    bar = tqdm(total=args.tokens, desc=f"deal ({k} prompts)", unit="token")
    timed = TimedReward(reward, bar)
    t0 = time.perf_counter()
    results = deal(sampler, timed, prompts[:k], top_k=args.deal_top_k, beam=args.deal_beam,
                   lookahead=args.deal_lookahead, lam=args.deal_lam, max_new_tokens=args.tokens,
                   contexts=contexts[:k])
    bar.close()
    seconds = time.perf_counter() - t0
    final = score(reward, prompts[:k], [r.completion for r in results], contexts[:k])
    label = f"DeAL k={args.deal_top_k} b={args.deal_beam} l={args.deal_lookahead}"
    return [Point(label, 1, final, [r.compute for r in results], seconds, [r.completion for r in results],
                  {"note": f"first {k} prompts" if k < len(prompts) else ""})]


# ------------------------------------------------------------------------------------------------------ output
def table(points: list[Point], n_prompts: int) -> tuple[list[str], list[list[str]]]:
    header = ["method", "budget", "prompts", "mean reward [95% CI]", "gen tok/prompt", "fwd tok/prompt",
              "reward calls/prompt", "seconds", "acceptance", "note"]
    body = []
    for p in points:
        e = p.estimate
        acc = p.extra.get("acceptance")
        body.append([p.method, str(p.budget), str(len(p.rewards)), f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]",
                     f"{p.per_prompt('generated_tokens'):.0f}", f"{p.per_prompt('forward_tokens'):.0f}",
                     f"{p.per_prompt('reward_calls'):.0f}", f"{p.seconds:.0f}",
                     f"{acc:.2f}" if acc is not None else "", p.extra.get("note", "")])
    return header, body


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def plot(points: list[Point], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.method, []).append(p)
    markers = iter("os^Dv<>")
    for method, pts in groups.items():
        xs = [p.per_prompt("generated_tokens") for p in pts]
        est = [p.estimate for p in pts]
        ys = [e.value for e in est]
        err = [[e.value - e.low for e in est], [e.high - e.value for e in est]]
        ax.errorbar(xs, ys, yerr=err, marker=next(markers), capsize=3, ls="-" if len(pts) > 1 else "none",
                    label=method)
        if len(pts) > 1:
            for p, x, y in zip(pts, xs, ys, strict=True):
                ax.annotate(str(p.budget), (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per prompt (log)")
    ax.set_ylabel("csr reward (mean, 95% bootstrap CI)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_runs(points: list[Point], ids: list[str], prompts: list[Any], runs_dir: Path, args: argparse.Namespace
               ) -> list[Path]:
    """One run directory per method; a row per (prompt, budget) with `strategy`, `budget`, `reward`, `compute`."""
    from alignkit.data.io import write_jsonl

    by_method: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        for i, (r, c, text) in enumerate(zip(p.rewards, p.computes, p.completions, strict=False)):
            by_method.setdefault(p.method, []).append(
                {"id": ids[i], "prompt": prompts[i], "completion": text, "strategy": p.method, "budget": p.budget,
                 "reward": r, "compute": c.as_dict()})
    out = []
    for method, rows in by_method.items():
        d = runs_dir / method.split(" ")[0].lower().replace("-", "_")
        d.mkdir(parents=True, exist_ok=True)
        write_jsonl(d / "samples.jsonl", rows)
        config = {"benchmark": "benchmarks/testtime.py", "method": method,
                  "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
        (d / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        out.append(d)
    return out


def update_doc(doc: Path, content: str, intro: str) -> None:
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{content.rstrip()}\n{END}"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{intro.rstrip()}\n\n{block}\n"
    else:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        end = len(text) if nxt < 0 else nxt + 1
        section = text[start:end]
        if BEGIN in section and END in section:
            section = section[:section.index(BEGIN)] + block + section[section.index(END) + len(END):]
        else:
            section = f"{SECTION}\n\n{intro.rstrip()}\n\n{block}\n" + ("\n" if nxt >= 0 else "")
        text = text[:start] + section + text[end:]
    doc.write_text(text)


INTRO = """\
Reward versus compute for the test-time strategies of `alignkit.decode` on the embedded model, scored by the `csr`
verifier (fraction of a prompt's constraints followed) on the constraint suite's test split. Compute comes from the
samplers' own counters (`Compute`: forward tokens = every token a forward pass processed, generated tokens, reward
calls), per prompt. Accounting: best-of-N reuses one set of `max_n` samples per prompt and takes the first N, with
compute = the sum of those N samples' own records (N x the per-sample cost; the prompt encoding is charged once) and
seconds pro rata; "sample (T=1)" is the mean reward of all draws (the expected reward of one sample) at the cost
of one draw (prompt encoding + the mean draw's tokens); QAlign runs one chain per prompt and reads off the state
after t steps (`select_by="last"`), with compute = initial sample + the first t suffix proposals and acceptance =
the fraction of those t proposals accepted;
DeAL is one small setting (it is by far the heaviest method: top_k x beam lookahead rollouts per output token).
The plot is `docs/testtime_benchmark.png`; the run directories (`--runs-dir`) feed `alignkit report`."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=8, help="first P prompts of the suite's test split")
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens per completion")
    ap.add_argument("--max-n", type=int, default=16, help="samples per prompt for best-of-N (N = 1, 2, 4, ...)")
    ap.add_argument("--steps", type=int, default=16, help="QAlign chain steps (read off at 1, 2, 4, ...)")
    ap.add_argument("--beta", type=float, default=0.1,
                    help="QAlign β; csr is in [0, 1], so β=0.1 makes one constraint of two worth e^5")
    ap.add_argument("--deal-prompts", type=int, default=4)
    ap.add_argument("--deal-top-k", type=int, default=2)
    ap.add_argument("--deal-beam", type=int, default=2)
    ap.add_argument("--deal-lookahead", type=int, default=4)
    ap.add_argument("--deal-lam", type=float, default=10.0, help="DeAL λ in log p + λ·R (R in [0, 1])")
    ap.add_argument("--methods", default="bon,qalign,deal", help="comma-separated subset of bon,qalign,deal")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is ~3x faster than 2 on the shared, oversubscribed 2-core CPU)")
    ap.add_argument("--sample-rows", type=int, default=64, help="sequences per sampling batch")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "testtime_benchmark.png")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-doc", action="store_true", help="do not write the plot or docs/benchmarks.md")
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "testtime_benchmark")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    unknown = methods - {"bon", "qalign", "deal"}
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}")
    load_before = _uptime()
    t_start = time.perf_counter()
    model, tok = load_model(args.model)
    sampler = HFSampler(model, tok, max_batch_rows=args.sample_rows)
    reward = load_reward("csr")
    suite = load_suite("test")[:args.prompts]
    prompts = [e.prompt for e in suite]
    contexts = [{"constraints": e.constraints} for e in suite]
    ids = [e.metadata["id"] for e in suite]
    points: list[Point] = []
    if "bon" in methods:
        points += run_bon(sampler, reward, prompts, contexts, args)
    if "qalign" in methods:
        points += run_qalign(sampler, reward, prompts, contexts, args)
    if "deal" in methods:
        points += run_deal(sampler, reward, prompts, contexts, args)
    wall = time.perf_counter() - t_start
    load_after = _uptime()
    header, body = table(points, len(prompts))
    md = markdown_table(header, body)
    print(md)
    command = " ".join(["python benchmarks/testtime.py", *map(shlex.quote, sys.argv[1:])])
    print(f"\nwall time {wall:.0f} s; load before: {load_before}; after: {load_after}")
    runs = write_runs(points, ids, prompts, args.runs_dir, args)
    print("run directories:", " ".join(str(r) for r in runs))
    if args.no_doc:
        return
    title = (f"{args.model}, {len(prompts)} suite test prompts, {args.tokens} new tokens, csr reward")
    plot(points, args.plot, title)
    rel_runs = " ".join(str(r.relative_to(ROOT)) if r.is_relative_to(ROOT) else str(r) for r in runs)
    content = f"""```
.venv/bin/{command}
.venv/bin/alignkit report {rel_runs} -o runs/testtime_benchmark/report.html   # optional
```

Setting: {args.model} (fp32, CPU, {args.threads} torch thread(s)); the first {len(prompts)} prompts of the suite's test \
split; at most {args.tokens} new tokens; temperature 1; seed {args.seed}; QAlign β = {args.beta}; DeAL top_k = \
{args.deal_top_k}, beam = {args.deal_beam}, lookahead = {args.deal_lookahead}, λ = {args.deal_lam}. Wall time \
{wall:.0f} s for the whole run on a shared 2-core CPU (`uptime` load average before: {load_before}; after: \
{load_after}), so seconds are noisy and comparable only within this run.

{md}

![reward vs generated tokens](testtime_benchmark.png)
"""
    update_doc(args.doc, content, INTRO)
    print(f"wrote {args.plot} and the '{SECTION}' section of {args.doc}")


def _uptime() -> str:
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout
        return out.split("load average:")[-1].strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
