"""Short Align Anything LLF run on the embedded model (issue 19 item 2): does DPO on (refinement, original) pairs,
refined after a trained feedback model's critique, raise held-out constraint satisfaction?

1. Gold critiques, made here (no hub data): the base model answers `--crit-prompts` suite:train prompts (temperature
   1); each answer's critique names the constraints its verifiers say it breaks ("The answer breaks: ... Fix: ...").
2. Feedback model: `data build --from feedback-model`, then LoRA `train --objective sft`.
3. `data build --from language-feedback` (policy = the base, feedback model = step 2) on `--llf-prompts` other
   suite:train prompts, then LoRA `train --objective dpo`.
4. Base vs trained on the first `--test-prompts` suite:test prompts, greedy: CSR (and prompt-level IFEval
   accuracy) as paired-bootstrap mean changes with 95 % CIs; the builder's kept/dropped counts; seconds per stage.

  OMP_NUM_THREADS=2 nice -n 19 python benchmarks/feedback_llf_embedded.py --out /tmp/llf
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def critique(rec: dict, answer: str) -> str:
    from alignkit.data.suite_gen.wording import render_constraint
    from alignkit.rewards.verifiers import check_constraints, parse_constraints

    checks = check_constraints(rec["prompt"], answer, parse_constraints(rec["constraints"]))
    broken = [render_constraint(t, c) for t, c, r in zip(rec["templates"], rec["constraints"], checks, strict=True)
              if not r["strict"]]
    if not broken:
        return "The answer follows every constraint. Keep it as it is."
    what = "this instruction" if len(broken) == 1 else "these instructions"
    return f"The answer breaks: {' '.join(broken)} Fix: rewrite it so that it follows {what} and still does the task."


def generate(model_spec: str, recs: list[dict], max_new_tokens: int, temperature: float) -> list[str]:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tok = load_model(model_spec)
    s, out = HFSampler(model.eval(), tok), []
    for i in range(0, len(recs), 8):
        rows = s.sample([r["prompt"] for r in recs[i:i + 8]], n=1, max_new_tokens=max_new_tokens,
                        temperature=temperature, seed=0)
        out += [g[0].text for g in rows]
    return out


def scores(spec: str, recs: list[dict], texts: list[str]) -> list[float]:
    from alignkit.rewards.registry import load_reward

    return list(load_reward(spec)([r["prompt"] for r in recs], texts, constraints=[r["constraints"] for r in recs])
                .scores)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--crit-prompts", type=int, default=24, help="suite:train prompts with gold critiques")
    ap.add_argument("--llf-prompts", type=int, default=24, help="other suite:train prompts for LLF pairs")
    ap.add_argument("--test-prompts", type=int, default=24, help="held-out suite:test prompts")
    ap.add_argument("--fm-steps", type=int, default=12)
    ap.add_argument("--dpo-steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--fm-lr", type=float, default=2e-4)
    ap.add_argument("--dpo-lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--max-new-tokens", type=int, default=64, help="answers (refinements get 2x)")
    ap.add_argument("--critique-max-new-tokens", type=int, default=48)
    ap.add_argument("--reward-filter", help="also drop pairs this reward scores worse (e.g. csr); default: none")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from alignkit.cli import main as cli
    from alignkit.data.suite import suite_records
    from alignkit.evaluate.stats import paired_bootstrap

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = suite_records("train"), suite_records("test")[:args.test_prompts]
    crit_recs = train[:args.crit_prompts]
    llf_recs = train[args.crit_prompts:args.crit_prompts + args.llf_prompts]
    common = ["--overwrite", "--set", "lora.r=8", "--set", "progress=false", "--set", "max_length=512",
              "--set", f"batch_size={args.batch_size}"]
    secs: dict[str, float] = {}
    t = time.time()

    def lap(name: str) -> None:
        nonlocal t
        secs[name] = round(time.time() - t, 1)
        t = time.time()

    answers = generate(args.model, crit_recs, args.max_new_tokens, 1.0)
    gold = [{"id": r["id"], "prompt": r["prompt"], "response": a, "feedback": critique(r, a)}
            for r, a in zip(crit_recs, answers, strict=True) if a.strip()]
    write_jsonl(out / "critiques.jsonl", gold)
    lap("gold_critiques")
    assert cli(["data", "build", "--from", "feedback-model", "--critiques", str(out / "critiques.jsonl"),
                "--out", str(out / "fm_sft.jsonl"), "--overwrite"]) == 0
    assert cli(["train", "--model", args.model, "--data", str(out / "fm_sft.jsonl"), "--objective", "sft",
                "--output-dir", str(out / "fm"), "--set", f"max_steps={args.fm_steps}",
                "--set", f"lr={args.fm_lr}", *common]) == 0
    lap("feedback_model_sft")
    write_jsonl(out / "llf_prompts.jsonl", [{k: r[k] for k in ("id", "prompt", "constraints")} for r in llf_recs])
    build = ["data", "build", "--from", "language-feedback", "--policy", args.model, "--feedback-model",
             str(out / "fm" / "final"), "--prompts", str(out / "llf_prompts.jsonl"), "--out", str(out / "pairs.jsonl"),
             "--max-new-tokens", str(args.max_new_tokens), "--critique-max-new-tokens",
             str(args.critique_max_new_tokens), "--report", str(out / "llf_report.json"), "--overwrite",
             "--no-progress"]
    assert cli(build + (["--reward", args.reward_filter] if args.reward_filter else [])) == 0
    report = json.loads((out / "llf_report.json").read_text())
    lap("language_feedback_build")
    trained = args.model
    if report["records_written"]:
        assert cli(["train", "--model", args.model, "--data", str(out / "pairs.jsonl"), "--objective", "dpo",
                    "--output-dir", str(out / "dpo"), "--set", f"max_steps={args.dpo_steps}",
                    "--set", f"lr={args.dpo_lr}", "--set", f"beta={args.beta}", *common]) == 0
        trained = str(out / "dpo" / "final")
    lap("dpo")
    before = generate(args.model, test, args.max_new_tokens, 0.0)
    lap("eval_base")
    after = generate(trained, test, args.max_new_tokens, 0.0) if trained != args.model else before
    lap("eval_trained")
    metrics = {}
    for spec in ("csr", "ifeval"):
        b, a = scores(spec, test, before), scores(spec, test, after)
        metrics[spec] = {"before": sum(b) / len(b), "after": sum(a) / len(a),
                         "change": paired_bootstrap(a, b, seed=0).as_dict()}
    gold_ok = sum(g["feedback"].startswith("The answer follows") for g in gold)
    result = {"model": args.model, "trained": trained, "dpo_ran": trained != args.model,
              "counts": {"gold_critiques": len(gold), "gold_all_followed": gold_ok, "llf_prompts": len(llf_recs),
                         "test_prompts": len(test)},
              "builder": {"kept": report["records_written"], "dropped": report["dropped"]},
              "settings": {k: v for k, v in vars(args).items() if k not in ("model", "out")},
              "metrics": metrics, "seconds": {**secs, "total": round(sum(secs.values()), 1)},
              "samples": [{"prompt": r["prompt"], "before": b, "after": a}
                          for r, b, a in zip(test, before, after, strict=True)][:3]}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
