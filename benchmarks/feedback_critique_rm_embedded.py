"""Short critique reward model run on the embedded model (issue 19 item 4): does a critique RM (MM-RLHF) trained on
verifier pairs with gold critiques rank held-out pairs, and how does it compare with a BT RM on the same data?

Data (made here, no hub): `alignkit data build --from verifier` samples --n answers per constraint-suite prompt
from the base model and keeps best-vs-worst by CSR (chosen follows more constraints; all-tied prompts are dropped).
Train pairs come from `suite:train`, held-out pairs from `suite:test` (other topics, other wording). Gold critiques
are written from the verifiers: "Follows all constraints." or "Breaks: <constraint kinds>.".
Trained: `reward train --objective critique` and, with --bt-steps > 0, `--objective bt` (same data and lr).
Measured on the held-out pairs: pair accuracy (score chosen > rejected; ties count 1/2) with a 95 % bootstrap CI for
the critique RM loaded as `rm:RUN/final` with its own greedy critiques (--critique-tokens), with the gold critiques
(an oracle: they state the label), with no critique, and the BT RM; paired bootstrap differences on the same pairs;
how often the generated critique equals the gold one. With --bon-prompts > 0: best-of-2 with `--reward rm:RUN/final`.

  OMP_NUM_THREADS=1 nice -n 19 python benchmarks/feedback_critique_rm_embedded.py --out /tmp/crm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def gold_critique(prompt: str, response: str, constraints: list) -> str:
    from alignkit.rewards.verifiers import check_constraints, parse_constraints

    res = check_constraints(prompt, response, parse_constraints(constraints))
    broken = [r["id"].split(":")[-1].replace("_", " ") for r in res if not r["strict"]]
    return "Follows all constraints." if not broken else "Breaks: " + ", ".join(broken) + "."


def verifier_pairs(cli, args, prompts: str, limit: int, path: Path) -> list[dict]:
    """Best-vs-worst CSR pairs sampled from the base model, with gold critiques; one pair per prompt."""
    assert cli(["data", "build", "--from", "verifier", "--policy", args.model, "--prompts", prompts, "--n",
                str(args.n), "--max-new-tokens", str(args.max_new_tokens), "--limit", str(limit), "--seed",
                str(args.seed), "--batch-size", "8", "--out", str(path), "--overwrite", "--no-progress"]) == 0
    rows = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        cons = r["metadata"]["constraints"]
        rows.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "constraints": cons,
                     "chosen_critique": gold_critique(r["prompt"], r["chosen"], cons),
                     "rejected_critique": gold_critique(r["prompt"], r["rejected"], cons)})
    return rows


def train_rm(cli, args, objective: str, data: Path, run: Path, steps: int) -> None:
    assert cli(["reward", "train", "--objective", objective, "--model", args.model, "--data", str(data),
                "--output-dir", str(run), "--overwrite", "--max-steps", str(steps), "--set",
                f"batch_size={args.batch_size}", "--set", f"lr={args.lr}", "--set", f"seed={args.seed}",
                "--set", "progress=false"]) == 0


def pair_correct(reward, held: list[dict], **ctx) -> tuple[list[float], object]:
    """1 if score(chosen) > score(rejected), 1/2 on a tie, else 0; and the RewardResult."""
    prompts = [r["prompt"] for r in held] * 2
    res = reward(prompts, [r["chosen"] for r in held] + [r["rejected"] for r in held], **ctx)
    h = len(held)
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(res.scores[:h], res.scores[h:],
                                                                     strict=True)], res


def best_of_2(cli, args, out: Path, final: Path, held: list[dict]) -> dict:
    """`alignkit generate --strategy bon --reward rm:RUN/final --n 2`; CSR of the picks and of the candidates."""
    from alignkit.rewards.registry import load_reward

    rows = held[: args.bon_prompts]
    (out / "bon_prompts.jsonl").write_text("".join(json.dumps({"id": f"h{i}", "prompt": r["prompt"],
                                                               "constraints": r["constraints"]}) + "\n"
                                                   for i, r in enumerate(rows)))
    assert cli(["generate", "--strategy", "bon", "--model", args.model, "--prompts", str(out / "bon_prompts.jsonl"),
                "--reward", f"rm:{final}", "--n", "2", "--max-new-tokens", str(args.max_new_tokens), "--seed",
                str(args.seed + 1), "--out-dir", str(out / "bon")]) == 0
    picks = [json.loads(line) for line in (out / "bon" / "samples.jsonl").read_text().splitlines()]
    csr = load_reward("csr")
    cons = [r["constraints"] for r in rows]
    picked = csr([r["prompt"] for r in rows], [p["completion"] for p in picks], constraints=cons).scores
    report = {"prompts": len(rows), "csr_of_pick": sum(picked) / len(rows)}
    cands = [p.get("candidates") for p in picks]
    if all(isinstance(c, list) and c and all(isinstance(x, str) for x in c) for c in cands):
        flat = [(r, x) for r, c in zip(rows, cands, strict=True) for x in c]
        scores = csr([r["prompt"] for r, _ in flat], [x for _, x in flat],
                     constraints=[r["constraints"] for r, _ in flat]).scores
        report["csr_of_candidates"] = sum(scores) / len(scores)
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train-prompts", type=int, default=40, help="suite:train prompts sampled (pairs ≤ this)")
    ap.add_argument("--held-prompts", type=int, default=32, help="suite:test prompts sampled for held-out pairs")
    ap.add_argument("--n", type=int, default=4, help="samples per prompt for the verifier pairs")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="answer length when sampling")
    ap.add_argument("--critique-tokens", type=int, default=48, help="critique length when scoring")
    ap.add_argument("--steps", type=int, default=8, help="critique RM optimiser steps")
    ap.add_argument("--bt-steps", type=int, default=8, help="BT baseline steps (0: no baseline)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--bon-prompts", type=int, default=4, help="best-of-2 prompts with rm:RUN/final (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from alignkit.cli import main as cli
    from alignkit.evaluate.stats import paired_bootstrap, proportion_ci
    from alignkit.rewards.registry import load_reward

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, secs = time.time(), {}
    train = verifier_pairs(cli, args, "suite:train", args.train_prompts, out / "train_raw.jsonl")
    held = verifier_pairs(cli, args, "suite:test", args.held_prompts, out / "held_raw.jsonl")
    if len(train) < 2 or not held:
        raise SystemExit(f"too few pairs ({len(train)} train, {len(held)} held out): raise --train/--held-prompts")
    cols = ("prompt", "chosen", "rejected", "chosen_critique", "rejected_critique")
    (out / "train.jsonl").write_text("".join(json.dumps({k: r[k] for k in cols}) + "\n" for r in train))
    secs["data"] = round(time.time() - t0, 1)

    t = time.time()
    train_rm(cli, args, "critique", out / "train.jsonl", out / "crm", args.steps)
    secs["train_critique"] = round(time.time() - t, 1)
    if args.bt_steps > 0:
        t = time.time()
        train_rm(cli, args, "bt", out / "train.jsonl", out / "bt", args.bt_steps)
        secs["train_bt"] = round(time.time() - t, 1)

    t = time.time()
    crm = load_reward(f"rm:{out / 'crm' / 'final'}")  # the registry path: a CritiqueReward
    crm.max_new_tokens = args.critique_tokens
    acc: dict[str, list[float]] = {}
    acc["critique_rm_generated"], res = pair_correct(crm, held)
    secs["score_generated"] = round(time.time() - t, 1)
    gold = [r["chosen_critique"] for r in held] + [r["rejected_critique"] for r in held]
    acc["critique_rm_gold_oracle"], _ = pair_correct(crm, held, critiques=gold)
    crm.with_critique = False
    acc["critique_rm_no_critique"], _ = pair_correct(crm, held)
    if args.bt_steps > 0:
        acc["bt_rm"], _ = pair_correct(load_reward(f"rm:{out / 'bt' / 'final'}"), held)
    gen = res.info["critiques"]
    h = len(held)
    (out / "held_scored.jsonl").write_text("".join(
        json.dumps({**r, "score_chosen": res.scores[i], "score_rejected": res.scores[h + i],
                    "generated_chosen_critique": gen[i], "generated_rejected_critique": gen[h + i]}) + "\n"
        for i, r in enumerate(held)))
    match = [z.strip() == g.strip() for z, g in zip(gen, gold, strict=True)]

    main_acc = acc["critique_rm_generated"]
    result = {"model": args.model, "train_pairs": len(train), "held_out_pairs": h, "steps": args.steps,
              "bt_steps": args.bt_steps, "lr": args.lr, "critique_tokens": args.critique_tokens,
              "chosen_follows_all_train": sum(r["chosen_critique"].startswith("Follows") for r in train) / len(train),
              "accuracy": {k: proportion_ci(v).as_dict() for k, v in acc.items()},
              "paired_vs_generated": {f"generated_minus_{k}": paired_bootstrap(main_acc, v, seed=0).as_dict()
                                      for k, v in acc.items() if k != "critique_rm_generated"},
              "critique_exact_match": proportion_ci(match).as_dict()}
    if args.bon_prompts > 0:
        t = time.time()
        meta = out / "crm" / "final" / "alignkit_critique_rm.json"  # the CLI path reads max_new_tokens from here
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "max_new_tokens": args.critique_tokens}))
        result["best_of_2"] = best_of_2(cli, args, out, out / "crm" / "final", held)
        secs["best_of_2"] = round(time.time() - t, 1)
    result["seconds"] = {**secs, "total": round(time.time() - t0, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    def ci(e: dict) -> str:
        return f"{e['value']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}] (n={e['n']})"

    print(f"{len(train)} train / {h} held-out pairs; {out / 'result.json'}")
    for k, e in {**result["accuracy"], **result["paired_vs_generated"], "critique_exact_match":
                 result["critique_exact_match"]}.items():
        print(f"  {k:42s} {ci(e)}")
    print(f"  best_of_2 {result.get('best_of_2')}\n  seconds {result['seconds']}")


if __name__ == "__main__":
    main()
