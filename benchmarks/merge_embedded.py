"""Short Self Positioning merge on the embedded model (issue 21 item 4): does a probe-searched merge of two LoRA
fine-tunes of one base beat the base, each fine-tune and the fixed rules (TIES, linear) on held-out prompts?

Fine-tunes of the base (LoRA r=8, project data only):
  1. `dpo`: DPO on best-vs-worst CSR pairs of the base's own samples (`alignkit data build --from verifier`) on the
     first `--build-prompts` suite:train prompts (constraint following);
  2. `arith`: SFT on `alignkit safety data task` ("What is a plus b? Answer with the number only.": terse answers).
Merge: `alignkit merge --method grid` (Self Positioning with a reward probe) over base-anchored task vectors
(`--anchor base`: two independent fine-tunes, not a chain), probe = the last `--probe` suite:train prompts (disjoint
from the build prompts), `--reward csr`, `--compare ties linear`; TIES and linear are also written as models.
`alignkit merge` takes the LoRA run's `final/` adapter directory as it is (it merges (α/r)·B·A into the base).
Evaluation: every model greedy on the first `--test` suite:test prompts (CSR) and on held-out arithmetic rows
(exact answer present); each reported as a paired-bootstrap difference vs the base with a 95 % CI, and the searched
merge vs the best single fine-tune (picked on the probe: the grid's (1, 0) and (0, 1) points, no test data used).

  OMP_NUM_THREADS=1 nice -n 19 python benchmarks/merge_embedded.py --out /tmp/merge
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def evaluate(cli, spec: str, prompts: str, out: Path, max_new_tokens: int, limit: int | None = None,
             reward: str = "csr") -> dict[str, dict]:
    """`alignkit eval` (greedy) → {prompt id: sample row with its `reward`}."""
    shutil.rmtree(out, ignore_errors=True)
    argv = ["eval", "--model", spec, "--prompts", prompts, "--reward", reward, "--output-dir", str(out),
            "--set", f"max_new_tokens={max_new_tokens}"]
    assert cli(argv + (["--limit", str(limit)] if limit else [])) == 0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]
    return {str(r["id"]): r for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", required=True)
    ap.add_argument("--build-prompts", type=int, default=24, help="suite:train prompts sampled for DPO pairs")
    ap.add_argument("--build-n", type=int, default=4, help="samples per build prompt")
    ap.add_argument("--dpo-steps", type=int, default=12)
    ap.add_argument("--arith-train", type=int, default=48)
    ap.add_argument("--sft-steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--probe", type=int, default=16, help="suite:train prompts in the merge probe")
    ap.add_argument("--grid", default="0,0.5,1", help="per-axis λ values (must hold 0 and 1 for the pick)")
    ap.add_argument("--test", type=int, default=32, help="suite:test prompts")
    ap.add_argument("--arith-test", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    if min(args.probe, args.test, args.build_prompts) < 1:
        ap.error("--probe, --test and --build-prompts must be >= 1")
    from alignkit.cli import main as cli
    from alignkit.data.suite import suite_records
    from alignkit.evaluate.stats import mean_ci, paired_bootstrap

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, seconds = time.time(), {}
    mnt = str(args.max_new_tokens)

    def lap(name: str) -> None:
        seconds[name] = round(time.time() - t0 - sum(seconds.values()), 1)

    # 1. data: verifier pairs from the base's samples; arithmetic SFT rows (train / held out)
    assert cli(["data", "build", "--from", "verifier", "--policy", args.model, "--prompts", "suite:train",
                "--limit", str(args.build_prompts), "--n", str(args.build_n), "--max-new-tokens", mnt,
                "--reward", "csr", "--format", "pairwise", "--out", str(out / "pairs.jsonl"), "--overwrite",
                "--no-progress", "--report", str(out / "build_report.json")]) == 0
    n_pairs = sum(1 for line in (out / "pairs.jsonl").read_text().splitlines() if line.strip())
    if n_pairs == 0:
        raise SystemExit(f"no verifier pairs from {args.build_prompts} prompts (all samples tied): raise "
                         "--build-prompts or --build-n")
    assert cli(["safety", "data", "task", "--n", str(4 * (args.arith_train + args.arith_test)), "--out",
                str(out / "task_pool.jsonl"), "--overwrite"]) == 0
    pool = [json.loads(line) for line in (out / "task_pool.jsonl").read_text().splitlines() if line.strip()]
    unique = list({r["prompt"]: r for r in pool}.values())
    arith = unique[:args.arith_train]
    held = [{"id": f"arith-{i}", "prompt": r["prompt"], "answer": r["completion"]}
            for i, r in enumerate(unique[args.arith_train:args.arith_train + args.arith_test])]
    write_jsonl(out / "arith_train.jsonl", arith)
    write_jsonl(out / "arith_test.jsonl", held)
    train_rows = suite_records("train")
    write_jsonl(out / "probe.jsonl", [{"task": "csr", "id": r["id"], "prompt": r["prompt"],
                                       "constraints": r["constraints"]} for r in train_rows[-args.probe:]])
    lap("data")

    # 2. two LoRA fine-tunes of the base
    common = ["--model", args.model, "--overwrite", "--set", f"lr={args.lr}", "--set", "lora.r=8", "--set",
              "progress=false"]
    assert cli(["train", "--data", str(out / "pairs.jsonl"), "--objective", "dpo", "--output-dir",
                str(out / "dpo"), "--set", f"max_steps={args.dpo_steps}", "--set",
                f"batch_size={min(args.batch_size, n_pairs)}", *common]) == 0
    assert cli(["train", "--data", str(out / "arith_train.jsonl"), "--objective", "sft", "--output-dir",
                str(out / "arith"), "--set", f"max_steps={args.sft_steps}", "--set",
                f"batch_size={args.batch_size}", *common]) == 0
    fts = [str(out / "dpo" / "final"), str(out / "arith" / "final")]  # LoRA adapter dirs: merge takes them as is
    lap("train")

    # 3. Self Positioning (reward grid) + the fixed rules as models
    grid = "[" + ",".join(v.strip() for v in args.grid.split(",")) + "]"
    merge = ["merge", "--base", args.model, "--models", *fts, "--anchor", "base", "--overwrite"]
    assert cli([*merge, "--method", "grid", "--probe", str(out / "probe.jsonl"), "--reward", "csr",
                "--compare", "ties", "linear", "--set", f"grid={grid}", "--set", f"max_new_tokens={mnt}",
                "--output-dir", str(out / "merge_grid")]) == 0
    for m in ("ties", "linear"):
        assert cli([*merge, "--method", m, "--output-dir", str(out / f"merge_{m}")]) == 0
    summary = json.loads((out / "merge_grid" / "merge.json").read_text())
    lap("merge")

    # 4. held-out evaluation: CSR on suite:test, arithmetic accuracy on the held-out task rows
    models = {"base": args.model, "dpo": fts[0], "arith": fts[1], "self_positioning": str(out / "merge_grid"),
              "ties": str(out / "merge_ties"), "linear": str(out / "merge_linear")}
    csr: dict[str, list[float]] = {}
    acc: dict[str, list[float]] = {}
    ids: list[str] = []
    for name, spec in models.items():
        rows = evaluate(cli, spec, "suite:test", out / "eval" / name, args.max_new_tokens, args.test)
        ids = ids or sorted(rows)
        csr[name] = [float(rows[i]["reward"]) for i in ids]
        ar = evaluate(cli, spec, str(out / "arith_test.jsonl"), out / "eval" / f"{name}-arith", 12, reward="words")
        acc[name] = [float(bool(re.search(rf"(?<!\d){h['answer']}(?!\d)", ar[h["id"]]["completion"])))
                     for h in held]
    lap("eval")

    # 5. statistics: paired bootstrap over prompts (95 % percentile intervals)
    points = {tuple(p["lambdas"]): p["metrics"]["csr"] for p in summary.get("grid_points", [])}
    single = {"dpo": points.get((1.0, 0.0)), "arith": points.get((0.0, 1.0))}
    if None in single.values():  # the grid lacks 0 or 1: fall back to the test means (a selection on test data)
        single = {k: sum(csr[k]) / len(csr[k]) for k in single}
        picked_on = "test"
    else:
        picked_on = "probe"
    best = max(single, key=lambda k: single[k])
    result = {
        "model": args.model, "args": vars(args), "pairs": n_pairs,
        "lambdas": summary["lambdas"], "probe_csr": summary.get("probe_metrics"),
        "probe_comparison": summary.get("comparison"),
        "probe_grid": [[p["lambdas"], p["metrics"]["csr"]] for p in summary.get("grid_points", [])],
        "probe_all_tied": len(set(points.values())) <= 1,  # then the grid keeps its first point, λ = (0, 0)
        "test_prompts": len(ids), "arith_test_prompts": len(held),
        "csr": {k: mean_ci(v).as_dict() for k, v in csr.items()},
        "csr_vs_base": {k: paired_bootstrap(v, csr["base"], seed=0).as_dict() for k, v in csr.items() if k != "base"},
        "arith_acc": {k: mean_ci(v).as_dict() for k, v in acc.items()},
        "arith_vs_base": {k: paired_bootstrap(v, acc["base"], seed=0).as_dict()
                          for k, v in acc.items() if k != "base"},
        "best_single": {"name": best, "picked_on": picked_on, "probe_or_test_csr": single},
        "merge_vs_best_single": {"csr": paired_bootstrap(csr["self_positioning"], csr[best], seed=0).as_dict(),
                                 "arith": paired_bootstrap(acc["self_positioning"], acc[best], seed=0).as_dict()},
        "seconds": {**seconds, "total": round(time.time() - t0, 1)},
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))

    def fmt(e: dict) -> str:
        return f"{e['value']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]"

    print(f"λ(self_positioning) = {result['lambdas']}; probe CSR {result['probe_csr']}; pairs {n_pairs}")
    print(f"{'model':18} {'CSR':>24} {'ΔCSR vs base':>24} {'arith acc':>24} {'Δarith vs base':>24}")
    for k in models:
        d1, d2 = result["csr_vs_base"].get(k), result["arith_vs_base"].get(k)
        print(f"{k:18} {fmt(result['csr'][k]):>24} {fmt(d1) if d1 else '':>24} {fmt(result['arith_acc'][k]):>24} "
              f"{fmt(d2) if d2 else '':>24}")
    mb = result["merge_vs_best_single"]
    print(f"self_positioning − {best} (best single, picked on {picked_on}): CSR {fmt(mb['csr'])}, "
          f"arith {fmt(mb['arith'])}")
    print(f"seconds {result['seconds']}; wrote {out / 'result.json'}")


if __name__ == "__main__":
    main()
