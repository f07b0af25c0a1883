"""`alignkit reward score|eval` (and `train`, when the RM training engine provides it).

`score` joins prompt rows (`prompt`, optional `id`, `constraints` or IFEval's `instruction_id_list`+`kwargs`,
`references`) with sample rows (`id` or `prompt`, plus `completion` or a `completions` list) and writes one row
per completion with its score and attributes. `eval` scores preference pairs (`prompt`, `chosen`, `rejected`,
optional category) and writes accuracy (overall, per category, RewardBench sections), MORE-style ECE at 5/10/20
bins with a reliability diagram; rows with `text`/`completion` and a 0/1 `label` instead give ReMoDetect AUROC.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from alignkit.cli import add_command
from alignkit.data.io import read_jsonl, write_jsonl
from alignkit.errors import DataError, RewardError
from alignkit.rewards.base import Reward, RewardResult, call_reward
from alignkit.rewards.registry import SPEC_HELP, load_reward

CATEGORY_FIELDS = ("category", "subset", "section")


def register(sub: argparse._SubParsersAction) -> None:
    reward = add_command(sub, "reward", "Score completions with a reward and evaluate reward models.", """\
  alignkit reward score --reward ifeval --data prompts.jsonl --completions samples.jsonl --out scores.jsonl
  alignkit reward eval --reward rm:runs/rm --data pairs.jsonl --out-dir runs/rm-eval
""")
    actions = reward.add_subparsers(dest="reward_command", metavar="ACTION")
    reward.set_defaults(func=lambda args: reward.print_help() or 0)

    p = add_command(actions, "score", "Score completions; writes one JSON row per completion.", f"""\
  alignkit reward score --reward csr_loose --data prompts.jsonl --completions samples.jsonl --out scores.jsonl
  alignkit reward score --reward bleu --data prompts.jsonl --completions samples.jsonl --out bleu.jsonl
  alignkit reward score --reward "0.5*bleu + 0.5*chrf" --completions samples.jsonl --out s.jsonl
  alignkit reward score --reward my_rewards.py:brevity --completions samples.jsonl --out s.jsonl
reward specs: {SPEC_HELP}
join: samples match prompts by `id`, else by `prompt` text, else by order (equal row counts).
""")
    p.add_argument("--reward", required=True, metavar="SPEC", help="reward spec (see below)")
    p.add_argument("--data", metavar="PROMPTS.jsonl", help="prompt rows (prompt, id, constraints, references); "
                   "optional when sample rows carry their prompt")
    p.add_argument("--completions", required=True, metavar="SAMPLES.jsonl",
                   help="sample rows: id or prompt, and completion (or a completions list)")
    p.add_argument("--out", required=True, metavar="SCORES.jsonl")
    p.add_argument("--split", help="split of a datasets folder or hub dataset given as --data")
    p.add_argument("--batch-size", type=int, default=64, help="completions per reward call (default 64)")
    p.set_defaults(func=cmd_score)

    p = add_command(actions, "eval", "Evaluate a reward on preference pairs (accuracy, ECE) or on labelled texts "
                    "(AUROC).", """\
  alignkit reward eval --reward rm:runs/rm --data pairs.jsonl --out-dir runs/rm-eval
  alignkit reward eval --reward rm:runs/rm --data rewardbench.jsonl --out-dir out --category-field subset
  alignkit reward eval --reward rm:runs/rm --data human_vs_llm.jsonl --out-dir out   # rows: text, label (1 = LLM)
writes: metrics.json, scores.jsonl and reliability.png (pairs) in --out-dir.
""")
    p.add_argument("--reward", required=True, metavar="SPEC")
    p.add_argument("--data", required=True, metavar="PAIRS.jsonl",
                   help="rows with prompt, chosen, rejected (+category); or text/completion with a 0/1 label")
    p.add_argument("--out-dir", required=True, metavar="DIR")
    p.add_argument("--split", help="split of a datasets folder or hub dataset given as --data")
    p.add_argument("--bins", type=int, default=10, help="bins of the reliability diagram (default 10)")
    p.add_argument("--category-field", help=f"category column (default: first of {', '.join(CATEGORY_FIELDS)})")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=cmd_eval)

    _add_train(actions)


def _add_train(actions: argparse._SubParsersAction) -> None:
    """`alignkit reward train` belongs to the RM training engine: a module `alignkit.cli.reward_train` that defines
    `add_train_parser(actions)` is hooked in here when it exists."""
    try:
        module = importlib.import_module("alignkit.cli.reward_train")
    except ModuleNotFoundError as e:
        if e.name != "alignkit.cli.reward_train":
            raise
        return
    add = getattr(module, "add_train_parser", None)
    if add is not None:
        add(actions)


# ---------------------------------------------------------------------------------------------------------------


def _constraints_of(row: dict[str, Any]) -> Any:
    if row.get("constraints") is not None:
        return row["constraints"]
    if row.get("instruction_id_list") is not None:
        return {"instruction_id_list": row["instruction_id_list"], "kwargs": row.get("kwargs")}
    return None


def _key(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def _row_id(row: dict[str, Any]) -> Any:
    return row.get("id", row.get("key"))


def join_samples(prompts: list[dict[str, Any]] | None, samples: list[dict[str, Any]], source: str
                 ) -> list[dict[str, Any]]:
    """One item per completion: {id, prompt, completion, constraints, references}."""
    items: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    by_prompt: dict[str, dict[str, Any]] = {}
    for row in prompts or []:
        if _row_id(row) is not None:
            by_id[str(_row_id(row))] = row
        if "prompt" in row:
            by_prompt[_key(row["prompt"])] = row
    order_join = bool(prompts) and all(_row_id(s) is None and "prompt" not in s for s in samples)
    if order_join and len(samples) != len(prompts or []):
        raise DataError(f"samples have neither `id` nor `prompt`, so they join prompts by order, but there are "
                        f"{len(samples)} samples for {len(prompts or [])} prompts", source=source)
    for i, s in enumerate(samples, start=1):
        if order_join:
            base = (prompts or [])[i - 1]
        elif _row_id(s) is not None and str(_row_id(s)) in by_id:
            base = by_id[str(_row_id(s))]
        elif "prompt" in s and _key(s["prompt"]) in by_prompt:
            base = by_prompt[_key(s["prompt"])]
        elif "prompt" in s:
            base = s
        else:
            raise DataError(f"sample id {_row_id(s)!r} matches no prompt row", source=source, line=i)
        if "completion" in s:
            completions = [s["completion"]]
        elif isinstance(s.get("completions"), list):
            completions = s["completions"]
        else:
            raise DataError("needs `completion` (a string) or `completions` (a list)", source=source, line=i)
        for c in completions:
            if not isinstance(c, str):
                raise DataError(f"completion must be a string, got {type(c).__name__}", source=source, line=i,
                                field="completion")
            items.append({"id": _row_id(base), "prompt": base["prompt"], "completion": c,
                          "constraints": _constraints_of(s) or _constraints_of(base),
                          "references": s.get("references") or base.get("references")})
    return items


def _score_items(reward: Reward, items: list[dict[str, Any]], batch_size: int) -> tuple[list[float], list[Any],
                                                                                       dict[str, float]]:
    from tqdm.auto import tqdm

    scores: list[float] = []
    attrs: list[Any] = []
    info: dict[str, float] = defaultdict(float)
    for s in tqdm(range(0, len(items), batch_size), desc="scoring", disable=len(items) <= batch_size):
        chunk = items[s:s + batch_size]
        ctx: dict[str, Any] = {}
        for key in ("constraints", "references"):
            if any(it[key] is not None for it in chunk):
                ctx[key] = [it[key] for it in chunk]
        res: RewardResult = call_reward(reward, [it["prompt"] for it in chunk], [it["completion"] for it in chunk],
                                        **ctx)
        scores += res.scores
        attrs += res.attributes or [None] * len(chunk)
        for k, v in res.info.items():
            if isinstance(v, (int, float)):
                info[k] += v
    return scores, attrs, dict(info)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _read_rows(source: str, split: str | None) -> list[dict[str, Any]]:
    """Rows of any source the data reader takes (JSONL/JSON/Parquet/CSV, datasets folders, `suite:test`, cached
    hub ids, `--split`), columns as they are (issue #16.4)."""
    from alignkit.data.io import read_rows

    return [row for _, row in read_rows(source, split=split)[1]]


def cmd_score(args: argparse.Namespace) -> int:
    reward = load_reward(args.reward)
    prompts = _read_rows(args.data, args.split) if args.data else None
    items = join_samples(prompts, read_jsonl(args.completions), args.completions)
    if not items:
        raise DataError("no completions to score", source=args.completions)
    scores, attrs, info = _score_items(reward, items, args.batch_size)
    rows = [{"id": it["id"], "prompt": it["prompt"], "completion": it["completion"], "reward": reward.name,
             "score": s, "attributes": _jsonable(a)} for it, s, a in zip(items, scores, attrs, strict=True)]
    write_jsonl(args.out, rows)
    mean = sum(scores) / len(scores)
    extra = "".join(f", {k}={v:g}" for k, v in info.items() if v)
    print(f"scored {len(scores)} completions with {reward.name}: mean {mean:.4f}{extra} -> {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from alignkit.rewards.evaluate import (
        auroc,
        calibration_errors,
        pairwise_accuracy,
        pairwise_probabilities,
        reliability_diagram,
        rewardbench_sections,
    )

    reward = load_reward(args.reward)
    rows = _read_rows(args.data, args.split)
    if not rows:
        raise DataError("no rows", source=args.data)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"reward": reward.name, "data": str(args.data)}
    if all("chosen" in r and "rejected" in r for r in rows):
        field = args.category_field or next((f for f in CATEGORY_FIELDS if any(f in r for r in rows)), None)
        items = []
        for r in rows:
            for side in ("chosen", "rejected"):
                items.append({"id": _row_id(r), "prompt": r.get("prompt", ""), "completion": r[side],
                              "constraints": _constraints_of(r), "references": r.get("references")})
        scores, _, _ = _score_items(reward, items, args.batch_size)
        chosen, rejected = scores[0::2], scores[1::2]
        cats = [str(r.get(field, "")) for r in rows] if field else None
        metrics.update(pairwise_accuracy(chosen, rejected, cats))
        if cats is not None:
            sections = rewardbench_sections(metrics["by_category"])
            if sections:
                metrics["rewardbench_sections"] = sections
        probs, labels = pairwise_probabilities(chosen, rejected)
        for b in sorted({5, 10, 20, args.bins}):
            cal = calibration_errors(probs, labels, b)
            metrics[f"calibration_bin{b}"] = {k: cal[k] for k in ("ece", "ace", "mce")}
        plot = reliability_diagram(calibration_errors(probs, labels, args.bins), out / "reliability.png",
                                   title=f"{reward.name}: pairwise calibration")
        write_jsonl(out / "scores.jsonl", [{"id": _row_id(r), "chosen_score": c, "rejected_score": j,
                                            "category": (cats[i] if cats else None)}
                                           for i, (r, c, j) in enumerate(zip(rows, chosen, rejected, strict=True))])
        summary = (f"accuracy {metrics['accuracy']:.4f} on {metrics['n']} pairs, "
                   f"ECE({args.bins} bins) {metrics[f'calibration_bin{args.bins}']['ece']:.4f}; plot {plot}")
    elif all("label" in r and ("text" in r or "completion" in r) for r in rows):
        items = [{"id": _row_id(r), "prompt": r.get("prompt", ""), "completion": r.get("text", r.get("completion")),
                  "constraints": None, "references": None} for r in rows]
        scores, _, _ = _score_items(reward, items, args.batch_size)
        labels_ = [int(r["label"]) for r in rows]
        metrics.update({"auroc": auroc(scores, labels_), "n": len(rows), "positives": sum(labels_)})
        write_jsonl(out / "scores.jsonl", [{"id": _row_id(r), "score": s, "label": y}
                                           for r, s, y in zip(rows, scores, labels_, strict=True)])
        summary = f"AUROC {metrics['auroc']:.4f} on {len(rows)} texts"
    else:
        raise RewardError(f"{args.data}: rows need prompt/chosen/rejected (pairs) or text/label (detection)")
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
    print(f"{reward.name}: {summary}; metrics -> {out / 'metrics.json'}")
    return 0
