"""`alignkit safety …`: safety recipes and evaluations (docs/safety.md).

* `safety data KIND --out FILE`: the project's seeded data sets (harmful, benign, task, qa, classify).
* `safety w2s`: weak-to-strong training with the auxiliary confidence loss and PGR with intervals.
* `safety compliance`: the compliance gap between a monitored and an unmonitored condition (alignment faking).
* `safety cosa-prompts` / `safety cosa-score`: CoSA configs × prompts for `alignkit generate`, and CoSA-Score.
* `safety honesty-data` / `safety honesty-eval`: idk-aware SFT recipes from QA, and M-vs-M′ honesty metrics.
* `safety dialectical-data` / `safety dialectical-eval`: poisoned-context SFT + preference data, and D/E/H.
* `safety guide-library` / `safety guide-prompts`: a guideline library, and guideline-conditioned prompt rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from alignkit.cli import add_command

EXAMPLES = """\
  alignkit safety data harmful --out harmful.jsonl
  alignkit safety data classify --n 240 --out safety_cls.jsonl
  alignkit safety w2s --data safety_cls.jsonl --weak-model tiny-random:2:32 --strong-model smollm2-135m-instruct \\
      --out-dir runs/w2s --set epochs=2 --set lr=1e-5
  alignkit safety compliance --model smollm2-135m-instruct --requests harmful.jsonl --n 4 --out-dir runs/cg
  alignkit safety compliance --model M --requests benign.jsonl --no-cot --condition-in-system --out-dir runs/cg_b
"""

DATA_KINDS = ("harmful", "benign", "task", "qa", "classify")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "safety", "Safety recipes and evaluations: project data sets, weak-to-strong training.",
                    EXAMPLES)
    verbs = p.add_subparsers(dest="safety_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _a: p.print_help() or 0)

    d = add_command(verbs, "data", "Write one of the project's seeded data sets as JSONL.",
                    "  alignkit safety data harmful --out harmful.jsonl\n  alignkit safety data qa --n 20 --out qa.jsonl\n")
    d.add_argument("kind", choices=DATA_KINDS)
    d.add_argument("--n", type=int, default=None, help="rows (default: the whole pool; task: 64; classify: 240)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", required=True)
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(func=cmd_data)

    w = add_command(verbs, "w2s", "Weak-to-strong: train weak on T1, label T2, train strong with the auxiliary "
                    "confidence loss; report PGR with intervals.",
                    "  alignkit safety w2s --data cls.jsonl --weak-model tiny-random:2:32 --strong-model "
                    "smollm2-135m-instruct --out-dir runs/w2s\n")
    w.add_argument("--data", required=True, metavar="ROWS.jsonl", help="rows with prompt and label (0/1)")
    w.add_argument("--weak-model", default=None)
    w.add_argument("--strong-model", default=None)
    w.add_argument("--out-dir", required=True)
    w.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="W2SConfig key (labels, test_frac, epochs, lr, weak_lr, batch_size, aux_coef, "
                        "warmup_frac, ramp, naive, seed, max_length)")
    w.set_defaults(func=cmd_w2s)

    c = add_command(verbs, "compliance", "Compliance gap: the same requests under a monitored (training) and an "
                    "unmonitored condition.",
                    "  alignkit safety compliance --model smollm2-135m-instruct --requests harmful.jsonl --n 4 "
                    "--out-dir runs/cg\n  alignkit safety compliance --model M --requests benign.jsonl --no-cot "
                    "--out-dir runs/cg_benign\n")
    c.add_argument("--model", default="smollm2-135m-instruct")
    c.add_argument("--requests", required=True, metavar="R.jsonl", help="rows with prompt (and prompt_id or id)")
    c.add_argument("--out-dir", required=True)
    c.add_argument("--n", type=int, default=4, help="samples per request and condition (default 4)")
    c.add_argument("--max-new-tokens", type=int, default=None, help="default 2048 with reasoning, 512 without")
    c.add_argument("--temperature", type=float, default=1.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-cot", action="store_true", help="no private reasoning area")
    c.add_argument("--without-training-details", action="store_true", help="control: leave out the training story")
    c.add_argument("--condition-in-system", action="store_true", help="state the condition in the system prompt")
    c.add_argument("--tier-swap", action="store_true", help="control: the unmonitored tier is the trained one")
    c.add_argument("--no-accept-suffix", action="store_true", help="do not ask for accept/reject tags")
    c.add_argument("--judge", metavar="SPEC", help="compliance judge: 'refusal' (default) or a reward spec")
    c.add_argument("--judge-threshold", type=float, default=0.5)
    c.add_argument("--af-judge", metavar="MODEL", help="a judge model for alignment-faking reasoning (20 votes)")
    c.add_argument("--af-votes", type=int, default=20)
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=cmd_compliance)

    cp = add_command(verbs, "cosa-prompts", "Write CoSA rows (a safety config as the system message × requests) "
                     "for `alignkit generate`; each row keeps its allowed categories.",
                     "  alignkit safety cosa-prompts --requests harmful.jsonl --allowed Violence --allowed '' "
                     "--out cosa.jsonl\n")
    cp.add_argument("--requests", required=True, metavar="R.jsonl", help="rows with prompt (and category)")
    cp.add_argument("--allowed", action="append", default=[], metavar="CATS",
                    help="one config per flag: allowed categories joined by ';' ('' = nothing allowed)")
    cp.add_argument("--out", required=True)
    cp.add_argument("--overwrite", action="store_true")
    cp.set_defaults(func=cmd_cosa_prompts)

    cs = add_command(verbs, "cosa-score", "CoSA-Score of judged responses (per config split and averaged).",
                     "  alignkit safety cosa-score --data judged.jsonl --out cosa_score.json\n"
                     "  alignkit safety cosa-score --data runs/g/samples.jsonl --prompts cosa.jsonl --judge heuristic\n")
    cs.add_argument("--data", required=True, metavar="ROWS.jsonl",
                    help="rows with allowed_categories and judge_categories + judge_helpfulness (0-5), or "
                         "prompt/completion/category rows with --judge heuristic")
    cs.add_argument("--prompts", metavar="COSA.jsonl", help="the `safety cosa-prompts` file: joined to --data by "
                    "id (for `alignkit generate` samples, which do not carry the allowed categories)")
    cs.add_argument("--judge", choices=["given", "heuristic"], default="given",
                    help="given: use the rows' judge fields; heuristic: refusal phrases + the request's category")
    cs.add_argument("--binary", action="store_true")
    cs.add_argument("--filter-unsafe", action="store_true")
    cs.add_argument("--filter-unsafe-self", action="store_true")
    cs.add_argument("--train-only", action="store_true")
    cs.add_argument("--out", metavar="SCORE.json")
    cs.set_defaults(func=cmd_cosa_score)

    hd = add_command(verbs, "honesty-data", "Build idk-aware SFT data (absolute, confidence_num, confidence_verb, "
                     "multisample, sft_baseline) from QA with known answers.",
                     "  alignkit safety data qa --out qa.jsonl\n"
                     "  alignkit safety honesty-data --qa qa.jsonl --model smollm2-135m-instruct --method absolute "
                     "--out honest_sft.jsonl\n"
                     "  alignkit train --model smollm2-135m-instruct --data honest_sft.jsonl --objective sft "
                     "--output-dir runs/honest\n")
    hd.add_argument("--qa", required=True, metavar="QA.jsonl",
                    help="question/answer(/aliases) rows, or rows already carrying greedy/sampling answers")
    hd.add_argument("--model", help="the unaligned model M that answers (needed unless --qa has its answers)")
    hd.add_argument("--method", choices=["sft_baseline", "absolute", "confidence_num", "confidence_verb",
                                         "multisample"], default="absolute")
    hd.add_argument("--m", type=int, default=10, help="samples per question at T = 1 (default 10)")
    hd.add_argument("--tau", type=float, default=0.1, help="absolute: answer iff k/m >= tau (default 0.1)")
    hd.add_argument("--max-new-tokens", type=int, default=32)
    hd.add_argument("--seed", type=int, default=0)
    hd.add_argument("--out", required=True)
    hd.add_argument("--answers-out", metavar="A.jsonl", help="also write M's collected answers here")
    hd.add_argument("--overwrite", action="store_true")
    hd.set_defaults(func=cmd_honesty_data)

    he = add_command(verbs, "honesty-eval", "Prudence, over-conservativeness and honesty of an aligned model M' "
                     "relative to its unaligned model M (greedy, identical prompts).",
                     "  alignkit safety honesty-eval --base smollm2-135m-instruct --aligned runs/honest/final "
                     "--qa qa.jsonl\n")
    he.add_argument("--base", required=True, metavar="MODEL")
    he.add_argument("--aligned", required=True, metavar="MODEL")
    he.add_argument("--qa", required=True, metavar="QA.jsonl")
    he.add_argument("--max-new-tokens", type=int, default=48)
    he.add_argument("--seed", type=int, default=0)
    he.add_argument("--out", metavar="HONESTY.json")
    he.set_defaults(func=cmd_honesty_eval)

    dd = add_command(verbs, "dialectical-data", "Dialectical alignment data: poisoned/conflicting-context items; "
                     "with --model, strategy sampling, the best-strategy table, SFT records and DPO pairs.",
                     "  alignkit safety dialectical-data --qa qa.jsonl --out-dir runs/da_data\n"
                     "  alignkit safety dialectical-data --qa qa.jsonl --model smollm2-135m-instruct --n 4 "
                     "--out-dir runs/da_data\n")
    dd.add_argument("--qa", required=True, metavar="QA.jsonl", help="question/answer(/aliases) rows")
    dd.add_argument("--model", help="policy that samples the strategies (omit to write the items only)")
    dd.add_argument("--n", type=int, default=4, help="responses per item and strategy (default 4)")
    dd.add_argument("--max-new-tokens", type=int, default=96)
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--no-ike", action="store_true", help="no in-context knowledge-editing items")
    dd.add_argument("--out-dir", required=True)
    dd.add_argument("--overwrite", action="store_true")
    dd.set_defaults(func=cmd_dialectical_data)

    de = add_command(verbs, "dialectical-eval", "3H-vs-security: defence rate per poison ratio, attack success, "
                     "clean accuracy, IKE success and their harmonic mean (greedy answers).",
                     "  alignkit safety dialectical-eval --model runs/da_dpo/final --items runs/da_data/items.jsonl "
                     "--out da_eval.json\n")
    de.add_argument("--model", required=True)
    de.add_argument("--items", required=True, metavar="ITEMS.jsonl")
    de.add_argument("--max-new-tokens", type=int, default=32)
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("--out", metavar="EVAL.json")
    de.set_defaults(func=cmd_dialectical_eval)

    gl = add_command(verbs, "guide-library", "Guide-Align stage 1: a model writes general guidelines for each "
                     "input; split, de-duplicated, written as a library.",
                     "  alignkit safety guide-library --model smollm2-135m-instruct --prompts harmful.jsonl "
                     "--out library.jsonl\n")
    gl.add_argument("--model", default="smollm2-135m-instruct")
    gl.add_argument("--prompts", required=True, metavar="P.jsonl")
    gl.add_argument("--max-new-tokens", type=int, default=160)
    gl.add_argument("--seed", type=int, default=0)
    gl.add_argument("--out", required=True)
    gl.add_argument("--overwrite", action="store_true")
    gl.set_defaults(func=cmd_guide_library)

    gp = add_command(verbs, "guide-prompts", "Guide-Align stage 2: retrieve the top guidelines per prompt (the "
                     "model's own hidden states as embeddings) and write guided prompt rows for `alignkit generate`.",
                     "  alignkit safety guide-prompts --library library.jsonl --prompts p.jsonl --out guided.jsonl\n"
                     "  alignkit generate --strategy sample --prompts guided.jsonl --temperature 0 --out-dir runs/g\n")
    gp.add_argument("--library", required=True, metavar="LIB.jsonl")
    gp.add_argument("--prompts", required=True, metavar="P.jsonl")
    gp.add_argument("--model", default="smollm2-135m-instruct", help="embedding model (mean-pooled hidden states)")
    gp.add_argument("--k", type=int, default=6)
    gp.add_argument("--n-docs", type=int, default=20)
    gp.add_argument("--out", required=True)
    gp.add_argument("--overwrite", action="store_true")
    gp.set_defaults(func=cmd_guide_prompts)


def _write(path: str, rows: list[dict[str, Any]], overwrite: bool) -> None:
    from alignkit.errors import ConfigError

    out = Path(path)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def cmd_data(args: argparse.Namespace) -> int:
    from alignkit.safety import data

    make = {"harmful": data.harmful_prompts, "benign": data.benign_prompts, "task": data.task_data,
            "qa": data.qa_items, "classify": data.safety_classification}[args.kind]
    rows = make(args.n, seed=args.seed) if args.n is not None else make(seed=args.seed)
    _write(args.out, rows, args.overwrite)
    print(f"wrote {len(rows)} {args.kind} rows to {args.out}")
    return 0


def cmd_w2s(args: argparse.Namespace) -> int:
    from alignkit.config import load_config
    from alignkit.data.io import read_jsonl
    from alignkit.safety.w2s import W2SConfig, run_w2s

    base = {"weak_model": args.weak_model, "strong_model": args.strong_model}
    cfg = load_config(W2SConfig, None, args.overrides, base=base)
    report = run_w2s(read_jsonl(args.data), args.out_dir, cfg)
    print(json.dumps({"accuracy": {k: v["value"] for k, v in report["accuracy"].items()},
                      "pgr": report["pgr"]}))
    return 0


def _out_dir(path: str, overwrite: bool) -> Path:
    from alignkit.errors import ConfigError

    out = Path(path)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace its files")
    out.mkdir(parents=True, exist_ok=True)
    return out


def cmd_compliance(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model
    from alignkit.safety.compliance import Variant
    from alignkit.safety.compliance_run import run_compliance
    from alignkit.safety.judges import make_judge

    out = _out_dir(args.out_dir, args.overwrite)
    variant = Variant(cot=not args.no_cot, training_details=not args.without_training_details,
                      condition_in_system=args.condition_in_system, tier_swap=args.tier_swap,
                      accept_suffix=not args.no_accept_suffix)
    model, tok = load_model(args.model, seed=args.seed)
    af = None
    if args.af_judge:
        af = HFSampler(*load_model(args.af_judge, seed=args.seed))
    rows, summary = run_compliance(HFSampler(model, tok), read_jsonl(args.requests), variant, n=args.n,
                                   max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                   seed=args.seed, judge=make_judge(args.judge, args.judge_threshold),
                                   af_sampler=af, af_votes=args.af_votes)
    summary["model"] = args.model
    _write(str(out / "samples.jsonl"), rows, True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    g = summary["compliant"]
    print(json.dumps({"monitored": g["monitored"]["rate"], "unmonitored": g["unmonitored"]["rate"],
                      "gap": g["gap"], "gap_paired": g.get("gap_paired"), "p_value": g["p_value"]}))
    return 0


def cmd_cosa_prompts(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.decode.system import cosa_config
    from alignkit.safety.cosa import split_name

    configs = [[c.strip() for c in a.split(";") if c.strip()] for a in (args.allowed or [""])]
    rows = []
    for req in read_jsonl(args.requests):
        for allowed in configs:
            rows.append({"id": f"{req.get('id', len(rows))}|{split_name(allowed)}",
                         "prompt": [{"role": "system", "content": cosa_config(allowed)},
                                    {"role": "user", "content": req["prompt"]}],
                         "allowed_categories": allowed, "category": req.get("category")})
    _write(args.out, rows, args.overwrite)
    print(f"wrote {len(rows)} CoSA rows ({len(configs)} configs) to {args.out}")
    return 0


def cmd_cosa_score(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.safety.cosa import cosa_score, heuristic_judge

    rows = read_jsonl(args.data)
    if args.prompts:
        from alignkit.errors import DataError

        by_id = {str(r["id"]): r for r in read_jsonl(args.prompts)}
        joined = []
        for line, r in enumerate(rows, start=1):
            src = by_id.get(str(r.get("id")))
            if src is None:
                raise DataError(f"id {r.get('id')!r} is not in {args.prompts}", source=args.data, line=line,
                                field="id")
            joined.append({**r, "allowed_categories": src["allowed_categories"], "category": src.get("category")})
        rows = joined
    if args.judge == "heuristic":
        rows = [heuristic_judge(r) for r in rows]
    result = cosa_score(rows, binary=args.binary, filter_unsafe=args.filter_unsafe,
                        filter_unsafe_self=args.filter_unsafe_self, train_only=args.train_only)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({"cosa_score": result["average"], "valid": result["valid"], "invalid": result["invalid"],
                      "splits": {k: v["cosa_score"]["value"] for k, v in result["splits"].items()}}))
    return 0


def cmd_honesty_data(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl, record_to_row
    from alignkit.errors import ConfigError
    from alignkit.safety.honesty_data import build_honesty_sft, collect_answers

    rows = read_jsonl(args.qa)
    if rows and "sampling_labels" not in rows[0]:
        if not args.model:
            raise ConfigError("--qa has no collected answers (sampling_labels); pass --model to collect them")
        from alignkit.decode.hf import HFSampler
        from alignkit.models import load_model

        sampler = HFSampler(*load_model(args.model, seed=args.seed))
        rows = collect_answers(sampler, rows, m=args.m, max_new_tokens=args.max_new_tokens, seed=args.seed)
        if args.answers_out:
            _write(args.answers_out, rows, args.overwrite)
    records = build_honesty_sft(rows, args.method, args.tau)
    _write(args.out, [record_to_row(r) for r in records], args.overwrite)
    idk = sum(r.completion.startswith("I apologize") for r in records)
    print(f"wrote {len(records)} {args.method} SFT rows ({idk} idk) from {len(rows)} questions to {args.out}")
    return 0


def cmd_honesty_eval(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model
    from alignkit.safety.honesty_data import evaluate_honesty

    base = HFSampler(*load_model(args.base, seed=args.seed))
    aligned = HFSampler(*load_model(args.aligned, seed=args.seed))
    result = evaluate_honesty(base, aligned, read_jsonl(args.qa), max_new_tokens=args.max_new_tokens,
                              seed=args.seed)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k]["value"] for k in ("prudence", "over_conservativeness", "honesty", "accuracy")}
                     | {"counts": result["counts"]}))
    return 0


def cmd_dialectical_data(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl, record_to_row
    from alignkit.safety import dialectical as da

    out = _out_dir(args.out_dir, args.overwrite)
    items = da.build_poisoned_items(read_jsonl(args.qa), ike=not args.no_ike, seed=args.seed)
    _write(str(out / "items.jsonl"), items, True)
    msg = f"wrote {len(items)} items"
    if args.model:
        from alignkit.decode.hf import HFSampler
        from alignkit.models import load_model

        sampler = HFSampler(*load_model(args.model, seed=args.seed))
        scored = da.sample_strategies(sampler, items, n=args.n, max_new_tokens=args.max_new_tokens, seed=args.seed)
        sft, pairs, table = da.build_dialectical_data(items, scored)
        _write(str(out / "strategy_samples.jsonl"), scored, True)
        _write(str(out / "sft.jsonl"), [record_to_row(r) for r in sft], True)
        _write(str(out / "pairs.jsonl"), [record_to_row(r) for r in pairs], True)
        (out / "strategy_table.json").write_text(json.dumps(table, indent=1))
        msg += f", {len(sft)} SFT records, {len(pairs)} pairs; best strategy per cell: {table['best']}"
    print(msg + f" to {out}")
    return 0


def cmd_dialectical_eval(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model
    from alignkit.safety import dialectical as da

    items = read_jsonl(args.items)
    sampler = HFSampler(*load_model(args.model, seed=args.seed))
    responses = [r[0].text for r in sampler.sample([da.item_prompt(it) for it in items], n=1,
                                                   max_new_tokens=args.max_new_tokens, temperature=0.0)]
    result = da.dialectical_metrics(items, responses, seed=args.seed)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in result.items()
                      if k != "defense_by_ratio"}))
    return 0


def cmd_guide_library(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model
    from alignkit.safety.guide import build_guideline_library, hidden_state_embedder

    model, tok = load_model(args.model, seed=args.seed)
    library = build_guideline_library(HFSampler(model, tok), [r["prompt"] for r in read_jsonl(args.prompts)],
                                      embed=hidden_state_embedder(model, tok), max_new_tokens=args.max_new_tokens,
                                      seed=args.seed)
    _write(args.out, library, args.overwrite)
    print(f"wrote {len(library)} guidelines ({sum(g['is_safety'] for g in library)} from risky inputs) to {args.out}")
    return 0


def cmd_guide_prompts(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.models import load_model
    from alignkit.safety.guide import GuidelineRetriever, guided_prompt, hidden_state_embedder

    model, tok = load_model(args.model)
    retriever = GuidelineRetriever(read_jsonl(args.library), hidden_state_embedder(model, tok))
    rows = []
    for i, r in enumerate(read_jsonl(args.prompts)):
        gs = retriever.guidelines_for(r["prompt"], args.k, args.n_docs) if args.k > 0 else []
        rows.append({**r, "id": r.get("id", i), "prompt": guided_prompt(r["prompt"], gs), "guidelines": gs})
    _write(args.out, rows, args.overwrite)
    print(f"wrote {len(rows)} guided prompts to {args.out}")
    return 0
