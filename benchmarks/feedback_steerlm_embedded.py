"""Short SteerLM v1 run on the embedded model (issue 19 item 5): after attribute-conditioned SFT on self-labelled
samples, does asking for verbosity 4 instead of 0 (or correctness 4 instead of 0) give longer (more correct)
answers than the same request gives the untrained model?

No attribute-labelled data ships, so this script makes it. Data: `--train-prompts` prompts from `suite:train`; each
is answered once per style by the base model (temperature `--temperature`), the style being an instruction appended
to the user turn plus a token cap: "Answer in one short sentence." (cap/4), "Be brief." (cap/2), nothing (3cap/4),
"Be detailed and thorough." (cap = `--max-new-tokens`), so verbosity varies. The scored row keeps the ORIGINAL
prompt (no instruction): the attribute string is the only cue left. Labelling rule (programmatic, all in 0..4):
  verbosity   = number of `--verbosity-edges` (default 15,35,60,90) ≤ the word count (IFEval's `count_words`)
  correctness = round(4 · CSR strict) on the suite's constraint verifiers (fraction of constraints followed)
  helpfulness = round(4 · CSR loose) (IFEval's loose variants; a proxy, no helpfulness judge ships)
  coherence   = round(4 · (1 − share of repeated word 3-grams)) − 1 if cut at the token cap (min 0); empty → 0
(no complexity label; the steering checks pass `--base` with the four labelled attributes.) Then `data build
--from steerlm`, `train --objective sft` (LoRA r=8), and `attribute-steering` on the first `--test-prompts`
prompts of `suite:test` (greedy, low 0 vs high 4) for the base model (zero-shot baseline) and the trained one.
No multi-attribute reward model exists cheaply, so scalar proxies score the answers: `words` (the CLI's reward)
and CSR strict, computed here from samples.jsonl with the prompts' constraints (the CLI's reward sees plain prompts
without constraints, so `--reward csr` cannot be used there). Reported per model, attribute and proxy: the paired
shift high − low with a paired-bootstrap 95 % CI; and trained − base: the paired (per prompt) difference of shifts.

  OMP_NUM_THREADS=1 nice -n 19 python benchmarks/feedback_steerlm_embedded.py --out runs/steerlm_smoke
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

STYLES = (("Answer in one short sentence.", 0.25), ("Be brief.", 0.5), ("", 0.75), ("Be detailed and thorough.", 1.0))
BASE = "helpfulness:4,correctness:4,coherence:4,verbosity:2"


def repetition(text: str) -> float:
    words = text.lower().split()
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def label(record, text: str, cut: bool, edges: list[int]) -> dict[str, int]:
    from alignkit.rewards.verifiers import check_constraints, count_words, parse_constraints, summarize

    s = summarize(check_constraints(record.prompt, text, parse_constraints(record.constraints or [])))
    coherence = 0 if not text.strip() else max(0, round(4 * (1 - repetition(text))) - int(cut))
    return {"helpfulness": round(4 * s["csr_loose"]), "correctness": round(4 * s["csr_strict"]),
            "coherence": coherence, "verbosity": sum(count_words(text) >= e for e in edges)}


def make_scored(args, records) -> list[dict]:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tok = load_model(args.model)
    sampler = HFSampler(model.eval(), tok)
    edges = [int(e) for e in args.verbosity_edges.split(",")]
    rows = []
    for k, (instruction, frac) in enumerate(STYLES):
        cap = max(8, int(frac * args.max_new_tokens))
        asked = [f"{r.prompt}\n\n{instruction}" if instruction else r.prompt for r in records]
        out = sampler.sample(asked, n=args.per_style, max_new_tokens=cap, temperature=args.temperature,
                             seed=args.seed + k)
        for r, samples in zip(records, out, strict=True):
            for s in samples:
                rows.append({"prompt": r.prompt, "completion": s.text, "style": instruction or "(none)",
                             "attributes": label(r, s.text, s.finish_reason == "length", edges)})
    return rows


def steer(cli, args, model: str, out: Path, records) -> dict[str, dict[str, list[float]]]:
    """Runs `alignkit attribute-steering` (reward words); returns per attribute: per-prompt shifts of each proxy."""
    from alignkit.rewards.base import call_reward
    from alignkit.rewards.registry import load_reward

    cmd = ["attribute-steering", "--model", model, "--reward", "words", "--prompts", args.test_source,
           "--limit", str(args.test_prompts), "--base", BASE, "--max-new-tokens", str(args.eval_max_new_tokens),
           "--seed", str(args.seed), "--out-dir", str(out)]
    for a in args.attributes.split(","):
        cmd += ["--attribute", a]
    assert cli(cmd) == 0
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    csr = load_reward("csr")
    shifts = {}
    for a in args.attributes.split(","):
        mine = [r for r in rows if r["attribute"] == a]
        assert [r["prompt"] for r in mine] == [p.prompt for p in records]
        sc = {v: call_reward(csr, records, [r[v] for r in mine]).scores for v in ("low", "high")}
        shifts[a] = {"words": [r["score_high"] - r["score_low"] for r in mine],
                     "csr": [float(h - lo) for h, lo in zip(sc["high"], sc["low"], strict=True)]}
    return shifts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train-source", default="suite:train")
    ap.add_argument("--test-source", default="suite:test")
    ap.add_argument("--train-prompts", type=int, default=20, help="prompts answered by the base model")
    ap.add_argument("--per-style", type=int, default=1, help="samples per prompt and style (4 styles)")
    ap.add_argument("--max-new-tokens", type=int, default=160, help="token cap of the most detailed style")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--verbosity-edges", default="15,35,60,90", help="word counts of verbosity 1,2,3,4")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--test-prompts", type=int, default=12, help="held-out prompts for the steering checks")
    ap.add_argument("--eval-max-new-tokens", type=int, default=128)
    ap.add_argument("--attributes", default="verbosity,correctness", help="attributes to steer, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from alignkit.cli import main as cli
    from alignkit.data.build.common import load_prompts
    from alignkit.evaluate.stats import mean_ci, paired_bootstrap

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times, t0 = {}, time.time()
    train = load_prompts(args.train_source)[: args.train_prompts]
    test = load_prompts(args.test_source)[: args.test_prompts]
    scored = make_scored(args, train)
    (out / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scored))
    times["sample"] = time.time() - t0
    assert cli(["data", "build", "--from", "steerlm", "--scored", str(out / "scored.jsonl"), "--out",
                str(out / "sft.jsonl"), "--overwrite", "--no-progress"]) == 0
    t1 = time.time()
    assert cli(["train", "--model", args.model, "--data", str(out / "sft.jsonl"), "--objective", "sft",
                "--output-dir", str(out / "run"), "--overwrite", "--set", f"max_steps={args.steps}",
                "--set", f"batch_size={args.batch_size}", "--set", f"lr={args.lr}", "--set", "lora.r=8",
                "--set", f"seed={args.seed}", "--set", "max_length=512", "--set", "progress=false"]) == 0
    times["train"] = time.time() - t1
    t2 = time.time()
    per = {"base": steer(cli, args, args.model, out / "steer_base", test),
           "trained": steer(cli, args, str(out / "run" / "final"), out / "steer_trained", test)}
    times["steer"] = time.time() - t2

    shifts: dict = {m: {} for m in (*per, "trained_minus_base")}
    for a, proxies in per["base"].items():
        for m in per:
            shifts[m][a] = {k: mean_ci(v, seed=args.seed).as_dict() for k, v in per[m][a].items()}
        shifts["trained_minus_base"][a] = {k: paired_bootstrap(per["trained"][a][k], v, seed=args.seed).as_dict()
                                           for k, v in proxies.items()}
    labels = {k: dict(sorted(Counter(r["attributes"][k] for r in scored).items())) for k in scored[0]["attributes"]}
    result = {"model": args.model, "train_prompts": len(train), "scored_rows": len(scored), "steps": args.steps,
              "lr": args.lr, "test_prompts": len(test), "label_counts": labels, "base_attributes": BASE,
              "shift_high_minus_low": shifts, "seconds": {k: round(v, 1) for k, v in times.items()},
              "seconds_total": round(time.time() - t0, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "shift_high_minus_low"}))
    for m, by in shifts.items():
        for a, ps in by.items():
            print(m, a, "  ".join(f"Δ{k} {e['value']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}]" for k, e in ps.items()))


if __name__ == "__main__":
    main()
