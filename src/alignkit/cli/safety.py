"""`alignkit safety …`: safety recipes and evaluations (docs/safety.md).

* `safety data KIND --out FILE`: the project's seeded data sets (harmful, benign, task, qa, classify).
* `safety w2s`: weak-to-strong training with the auxiliary confidence loss and PGR with intervals.
* `safety compliance`: the compliance gap between a monitored and an unmonitored condition (alignment faking).
* `safety cosa-prompts` / `safety cosa-score`: CoSA configs × prompts for `alignkit generate`, and CoSA-Score.
* `safety honesty-data` / `safety honesty-eval`: idk-aware SFT recipes from QA, and M-vs-M′ honesty metrics.
* `safety dialectical-data` / `safety dialectical-eval`: poisoned-context SFT + preference data, and D/E/H.
* `safety guide-library` / `safety guide-prompts` / `safety guide-sft`: a guideline library, guideline-conditioned
  prompt rows, and SFT rows from guided samples (`alignkit generate --strategy guide` conditions on the fly).
* `safety remodetect-data`: (LLM, mixed, human) triplets for `alignkit reward train --objective remodetect`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from alignkit.cli import add_command, add_set_flag
from alignkit.cli.build import _sampler

EXAMPLES = """\
  alignkit safety data harmful --out harmful.jsonl
  alignkit safety data classify --n 240 --out safety_cls.jsonl
  alignkit safety w2s --data safety_cls.jsonl --weak-model tiny-random:2:32 --strong-model smollm2-135m-instruct \\
      --out-dir runs/w2s --set epochs=2 --set lr=1e-5
  alignkit safety compliance --model smollm2-135m-instruct --requests harmful.jsonl --n 4 --out-dir runs/cg
  alignkit safety compliance --model M --requests benign.jsonl --no-cot --condition-in-system --out-dir runs/cg_b
"""

DATA_KINDS = ("harmful", "benign", "task", "qa", "classify", "human")


def _verb(verbs: argparse._SubParsersAction, name: str, help: str, examples: str, func: Any
          ) -> argparse.ArgumentParser:
    p = add_command(verbs, name, help, examples)
    p.set_defaults(func=func)
    return p


def _flags(p: argparse.ArgumentParser, *, model: str | None | bool = False, max_new_tokens: int | None | bool = False,
           seed: bool = True, out: str | None = None, overwrite: bool = True, rows: tuple[str, str, str] | None = None
           ) -> None:
    """The flags the safety verbs share, each spelled once: `--model` (False: none; None: no default), the input
    rows (flag, metavar, help), `--max-new-tokens`, `--seed`, the output (`file`, `optional` file or `dir`) and
    `--overwrite` (never replace a user file without it)."""
    if rows is not None:
        p.add_argument(rows[0], required=True, metavar=rows[1], help=rows[2])
    if model is not False:
        p.add_argument("--model", default=model, help="model spec" + (f" (default {model})" if model else ""))
    if max_new_tokens is not False:
        p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    if seed:
        p.add_argument("--seed", type=int, default=0)
    if out == "file":
        p.add_argument("--out", required=True)
    elif out == "optional":
        p.add_argument("--out", metavar="OUT.json", help="also write the full result here")
    elif out == "dir":
        p.add_argument("--out-dir", required=True)
    if overwrite and out in ("file", "dir"):
        p.add_argument("--overwrite", action="store_true", help="replace existing output")


QA_ROWS = ("--qa", "QA.jsonl", "question/answer(/aliases) rows")
EMBEDDED = "smollm2-135m-instruct"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "safety", "Safety recipes and evaluations: project data sets, weak-to-strong training.",
                    EXAMPLES)
    verbs = p.add_subparsers(dest="safety_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _a: p.print_help() or 0)

    d = _verb(verbs, "data", "Write one of the project's seeded data sets as JSONL.",
              "  alignkit safety data harmful --out harmful.jsonl\n  alignkit safety data qa --n 20 --out qa.jsonl\n",
              cmd_data)
    d.add_argument("kind", choices=DATA_KINDS)
    d.add_argument("--n", type=int, default=None, help="rows (default: the whole pool; task: 64; classify: 240)")
    _flags(d, out="file")

    w = _verb(verbs, "w2s", "Weak-to-strong: train weak on T1, label T2, train strong with the auxiliary "
              "confidence loss; report PGR with intervals.",
              "  alignkit safety w2s --data cls.jsonl --weak-model tiny-random:2:32 --strong-model "
              "smollm2-135m-instruct --out-dir runs/w2s\n", cmd_w2s)
    w.add_argument("--weak-model", default=None)
    w.add_argument("--strong-model", default=None)
    _flags(w, seed=False, out="dir", overwrite=False, rows=("--data", "ROWS.jsonl", "rows with prompt and label (0/1)"))
    add_set_flag(w, "W2SConfig key (labels, test_frac, epochs, lr, weak_lr, batch_size, aux_coef, warmup_frac, "
                    "ramp, naive, seed, max_length)")

    c = _verb(verbs, "compliance", "Compliance gap: the same requests under a monitored (training) and an "
              "unmonitored condition.",
              "  alignkit safety compliance --model smollm2-135m-instruct --requests harmful.jsonl --n 4 "
              "--out-dir runs/cg\n  alignkit safety compliance --model M --requests benign.jsonl --no-cot "
              "--out-dir runs/cg_benign\n", cmd_compliance)
    _flags(c, model=EMBEDDED, max_new_tokens=None, out="dir",
           rows=("--requests", "R.jsonl", "rows with prompt (and prompt_id or id)"))
    c.add_argument("--n", type=int, default=4, help="samples per request and condition (default 4)")
    c.add_argument("--temperature", type=float, default=1.0)
    for flag, text in (("--no-cot", "no private reasoning area (max new tokens: 512, else 2048)"),
                       ("--without-training-details", "control: leave out the training story"),
                       ("--condition-in-system", "state the condition in the system prompt"),
                       ("--tier-swap", "control: the unmonitored tier is the trained one"),
                       ("--no-accept-suffix", "do not ask for accept/reject tags")):
        c.add_argument(flag, action="store_true", help=text)
    c.add_argument("--judge", metavar="SPEC", help="compliance judge: 'refusal' (default) or a reward spec")
    c.add_argument("--judge-threshold", type=float, default=0.5)
    c.add_argument("--af-judge", metavar="MODEL", help="a judge model for alignment-faking reasoning (20 votes)")
    c.add_argument("--af-votes", type=int, default=20)

    cp = _verb(verbs, "cosa-prompts", "Write CoSA rows (a safety config as the system message × requests) for "
               "`alignkit generate`; each row keeps its allowed categories.",
               "  alignkit safety cosa-prompts --requests harmful.jsonl --allowed Violence --allowed '' "
               "--out cosa.jsonl\n", cmd_cosa_prompts)
    _flags(cp, seed=False, out="file", rows=("--requests", "R.jsonl", "rows with prompt (and category)"))
    cp.add_argument("--allowed", action="append", default=[], metavar="CATS",
                    help="one config per flag: allowed categories joined by ';' ('' = nothing allowed)")

    cs = _verb(verbs, "cosa-score", "CoSA-Score of judged responses (per config split and averaged).",
               "  alignkit safety cosa-score --data judged.jsonl --out cosa_score.json\n"
               "  alignkit safety cosa-score --data runs/g/samples.jsonl --prompts cosa.jsonl --judge heuristic\n",
               cmd_cosa_score)
    _flags(cs, seed=False, out="optional", rows=(
        "--data", "ROWS.jsonl", "rows with allowed_categories and judge_categories + judge_helpfulness (0-5), or "
        "prompt/completion/category rows with --judge heuristic"))
    cs.add_argument("--prompts", metavar="COSA.jsonl", help="the `safety cosa-prompts` file: joined to --data by "
                    "id (for `alignkit generate` samples, which do not carry the allowed categories)")
    cs.add_argument("--judge", choices=["given", "heuristic"], default="given",
                    help="given: use the rows' judge fields; heuristic: refusal phrases + the request's category")
    for flag in ("--binary", "--filter-unsafe", "--filter-unsafe-self", "--train-only"):
        cs.add_argument(flag, action="store_true")

    hd = _verb(verbs, "honesty-data", "Build idk-aware SFT data (absolute, confidence_num, confidence_verb, "
               "multisample, sft_baseline) from QA with known answers.",
               "  alignkit safety data qa --out qa.jsonl\n"
               "  alignkit safety honesty-data --qa qa.jsonl --model smollm2-135m-instruct --method absolute "
               "--out honest_sft.jsonl\n"
               "  alignkit train --model smollm2-135m-instruct --data honest_sft.jsonl --objective sft "
               "--output-dir runs/honest\n", cmd_honesty_data)
    _flags(hd, model=None, max_new_tokens=32, out="file", rows=(
        "--qa", "QA.jsonl", "question/answer(/aliases) rows, or rows already carrying greedy/sampling answers"))
    hd.add_argument("--method", choices=["sft_baseline", "absolute", "confidence_num", "confidence_verb",
                                         "multisample"], default="absolute")
    hd.add_argument("--m", type=int, default=10, help="samples per question at T = 1 (default 10)")
    hd.add_argument("--tau", type=float, default=0.1, help="absolute: answer iff k/m >= tau (default 0.1)")
    hd.add_argument("--answers-out", metavar="A.jsonl", help="also write M's collected answers here")

    he = _verb(verbs, "honesty-eval", "Prudence, over-conservativeness and honesty of an aligned model M' relative "
               "to its unaligned model M (greedy, identical prompts).",
               "  alignkit safety honesty-eval --base smollm2-135m-instruct --aligned runs/honest/final "
               "--qa qa.jsonl\n", cmd_honesty_eval)
    he.add_argument("--base", required=True, metavar="MODEL")
    he.add_argument("--aligned", required=True, metavar="MODEL")
    _flags(he, max_new_tokens=48, out="optional", rows=QA_ROWS)

    dd = _verb(verbs, "dialectical-data", "Dialectical alignment data: poisoned/conflicting-context items; with "
               "--model, strategy sampling, the best-strategy table, SFT records and DPO pairs.",
               "  alignkit safety dialectical-data --qa qa.jsonl --out-dir runs/da_data\n"
               "  alignkit safety dialectical-data --qa qa.jsonl --model smollm2-135m-instruct --n 4 "
               "--out-dir runs/da_data\n", cmd_dialectical_data)
    _flags(dd, model=None, max_new_tokens=96, out="dir", rows=QA_ROWS)
    dd.add_argument("--n", type=int, default=4, help="responses per item and strategy (default 4)")
    dd.add_argument("--no-ike", action="store_true", help="no in-context knowledge-editing items")

    de = _verb(verbs, "dialectical-eval", "3H-vs-security: defence rate per poison ratio, attack success, clean "
               "accuracy, IKE success and their harmonic mean (greedy answers).",
               "  alignkit safety dialectical-eval --model runs/da_dpo/final --items runs/da_data/items.jsonl "
               "--out da_eval.json\n", cmd_dialectical_eval)
    _flags(de, model=None, max_new_tokens=32, out="optional", rows=("--items", "ITEMS.jsonl", "dialectical items"))
    de.add_argument("--base", metavar="MODEL", help="also evaluate this model on the same items and report every "
                    "metric as model - base with a paired 95%% CI")

    gl = _verb(verbs, "guide-library", "Guide-Align stage 1: a model writes general guidelines for each input; "
               "split, de-duplicated, written as a library.",
               "  alignkit safety guide-library --model smollm2-135m-instruct --prompts harmful.jsonl "
               "--out library.jsonl\n", cmd_guide_library)
    _flags(gl, model=EMBEDDED, max_new_tokens=160, out="file", rows=("--prompts", "P.jsonl", "rows with prompt"))

    gp = _verb(verbs, "guide-prompts", "Guide-Align stage 2 as prompt rows: retrieve the top guidelines per prompt "
               "and write guided prompt rows for any `alignkit generate` strategy (or use --strategy guide).",
               "  alignkit safety guide-prompts --library library.jsonl --prompts p.jsonl --out guided.jsonl\n"
               "  alignkit generate --strategy sample --prompts guided.jsonl --temperature 0 --out-dir runs/g\n",
               cmd_guide_prompts)
    _flags(gp, model=EMBEDDED, seed=False, out="file", rows=("--prompts", "P.jsonl", "rows with prompt"))
    gp.add_argument("--library", required=True, metavar="LIB.jsonl")
    gp.add_argument("--k", type=int, default=6)
    gp.add_argument("--n-docs", type=int, default=20)

    gs = _verb(verbs, "guide-sft", "Guide-Align stage 3: SFT rows (the unguided prompt → the guided answer, with "
               "the guideline ids) from `alignkit generate --strategy guide` samples.",
               "  alignkit generate --strategy guide --prompts p.jsonl --set library=library.jsonl --out-dir runs/g\n"
               "  alignkit safety guide-sft --samples runs/g/samples.jsonl --out guided_sft.jsonl\n"
               "  alignkit train --data guided_sft.jsonl --objective sft --output-dir runs/guided_sft\n",
               cmd_guide_sft)
    _flags(gs, seed=False, out="file", rows=("--samples", "SAMPLES.jsonl", "`generate --strategy guide` output"))
    gs.add_argument("--keep-guidelines", action="store_true",
                    help="keep the guideline block in the training prompt (default: drop it)")

    rd = _verb(verbs, "remodetect-data", "ReMoDetect triplets: the aligned model's answer and a human/LLM-mixed "
               "text (paraphrased sentences) for each human text, for `reward train --objective remodetect`.",
               "  alignkit safety data human --out human.jsonl\n"
               "  alignkit safety remodetect-data --rows human.jsonl --model smollm2-135m-instruct "
               "--out triplets.jsonl\n"
               "  alignkit reward train --objective remodetect --data triplets.jsonl --output-dir runs/rmd\n",
               cmd_remodetect_data)
    _flags(rd, model=None, max_new_tokens=256, out="file", rows=(
        "--rows", "ROWS.jsonl", "rows with human and llm (and mixed) texts, or human and question"))
    rd.add_argument("--fraction", type=float, default=0.5, help="share of human sentences paraphrased (0.5)")
    rd.add_argument("--temperature", type=float, default=0.0, help="for the model's answers (default greedy)")


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
            "qa": data.qa_items, "classify": data.safety_classification, "human": data.human_answers}[args.kind]
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
    from alignkit.safety.compliance import Variant
    from alignkit.safety.compliance_run import run_compliance
    from alignkit.safety.judges import make_judge

    out = _out_dir(args.out_dir, args.overwrite)
    variant = Variant(cot=not args.no_cot, training_details=not args.without_training_details,
                      condition_in_system=args.condition_in_system, tier_swap=args.tier_swap,
                      accept_suffix=not args.no_accept_suffix)
    af = _sampler(args.af_judge, args.seed) if args.af_judge else None
    rows, summary = run_compliance(_sampler(args.model, args.seed), read_jsonl(args.requests), variant, n=args.n,
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
        sampler = _sampler(args.model, args.seed)
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
    from alignkit.safety.honesty_data import evaluate_honesty

    base, aligned = _sampler(args.base, args.seed), _sampler(args.aligned, args.seed)
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
        sampler = _sampler(args.model, args.seed)
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
    from alignkit.errors import ConfigError
    from alignkit.safety import dialectical as da

    if not args.model:
        raise ConfigError("dialectical-eval needs --model (the model to evaluate)")
    items = read_jsonl(args.items)

    def answers(model: str) -> list[str]:
        return [r[0].text for r in _sampler(model, args.seed).sample(
            [da.item_prompt(it) for it in items], n=1, max_new_tokens=args.max_new_tokens, temperature=0.0)]

    responses = answers(args.model)
    result = da.dialectical_metrics(items, responses, seed=args.seed)
    if args.base:
        base = answers(args.base)
        result["base"] = da.dialectical_metrics(items, base, seed=args.seed)
        result["change"] = da.paired_changes(items, base, responses, seed=args.seed)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in result.items()
                      if k not in ("defense_by_ratio", "base")}))
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


def cmd_guide_sft(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl, record_to_row
    from alignkit.safety.guide import guided_sft_from_samples

    records, empty = guided_sft_from_samples(read_jsonl(args.samples), keep_guidelines=args.keep_guidelines,
                                             source=args.samples)
    _write(args.out, [record_to_row(r) for r in records], args.overwrite)
    print(f"wrote {len(records)} guided SFT rows ({'with' if args.keep_guidelines else 'without'} the guideline "
          f"block in the prompt) to {args.out}; left out {empty} with an empty guided answer")
    return 0


def cmd_remodetect_data(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_jsonl
    from alignkit.safety.remodetect import build_triplets

    sampler = _sampler(args.model, args.seed) if args.model else None
    rows = build_triplets(sampler, read_jsonl(args.rows), fraction=args.fraction, seed=args.seed,
                          max_new_tokens=args.max_new_tokens, temperature=args.temperature, source=args.rows)
    _write(args.out, rows, args.overwrite)
    mixed = sum(bool(r["paraphrased"]) for r in rows)
    print(f"wrote {len(rows)} (llm, mixed, human) rows ({mixed} with paraphrased sentences) to {args.out}")
    return 0
