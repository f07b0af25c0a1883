"""`alignkit attribute-steering`: does asking a SteerLM model for more of an attribute give more of it? (spec
wave2_selfalign_merge.md §7, issue 19 item 5; `alignkit.evaluate.attribute_steering`). Writes OUT_DIR/config.yaml,
steering.json (per attribute: paired shift of every scored attribute with its bootstrap CI, share of prompts that
moved up) and samples.jsonl (both answers per prompt with their scores)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignkit.cli import add_command

EXAMPLES = """\
  alignkit attribute-steering --model runs/steerlm/final --reward rm:runs/attr-rm/final --prompts p.jsonl \\
      --attribute verbosity --attribute helpfulness --out-dir runs/steer-check
  alignkit attribute-steering --model smollm2-135m-instruct --reward words --prompts suite:test --limit 40 \\
      --attribute verbosity --low 0 --high 4 --out-dir runs/steer-words     # word count as the verbosity proxy
  alignkit attribute-steering --model runs/steerlm/final --reward csr --score-as-attribute --prompts suite:test \\
      --attribute correctness --out-dir runs/steer-csr          # the suite's constraints reach the verifier
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "attribute-steering", "Steerability of an attribute-conditioned (SteerLM) model: generate "
                    "at a low and a high requested value, score with an attribute reward, paired CI.", EXAMPLES)
    p.add_argument("--model", default="smollm2-135m-instruct", help="the attribute-conditioned policy")
    p.add_argument("--reward", required=True, metavar="SPEC", help="attribute reward: a multi-attribute RM "
                   "(rm:DIR trained with HelpSteer2 attributes) or a scalar proxy for the attribute (e.g. words)")
    p.add_argument("--prompts", required=True, help="prompt file, suite:test, or a cached hub id")
    p.add_argument("--split", help="split of a datasets folder or hub dataset")
    p.add_argument("--attribute", action="append", required=True, help="attribute to move (repeatable)")
    p.add_argument("--low", type=int, default=0, help="requested low value (default 0)")
    p.add_argument("--high", type=int, default=4, help="requested high value (default 4)")
    p.add_argument("--base", metavar="NAME:V,...", help="the other attributes' values (default helpfulness:4,"
                   "correctness:4,coherence:4,complexity:2,verbosity:2)")
    p.add_argument("--score-as-attribute", action="store_true", help="the reward's scalar score is the requested "
                   "attribute even if the reward also reports attributes (e.g. --reward csr for correctness)")
    p.add_argument("--limit", type=int, help="use only the first N prompts")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from alignkit.cli.generate import _read_prompts
    from alignkit.data.io import write_jsonl
    from alignkit.data.steerlm import parse_attribute_string, requested_attributes
    from alignkit.decode.hf import HFSampler
    from alignkit.evaluate.attribute_steering import DEFAULT_BASE, attribute_steering_check
    from alignkit.models import load_model
    from alignkit.rewards.registry import load_reward

    for a in args.attribute:  # whole numbers in 0..4, as trained
        requested_attributes(f"{a}:{args.low},{a}:{args.high}", "--attribute/--low/--high")
    base = parse_attribute_string(requested_attributes(args.base, "--base")) if args.base else dict(DEFAULT_BASE)
    prompts, contexts, _ = _read_prompts(args.prompts, args.split)
    prompts, contexts = prompts[: args.limit or None], contexts[: args.limit or None]
    reward = load_reward(args.reward)
    model, tok = load_model(args.model)
    sampler = HFSampler(model, tok)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model": args.model, "reward": args.reward, "prompts": args.prompts, "attributes": args.attribute,
              "low": args.low, "high": args.high, "base": base, "limit": args.limit,
              "max_new_tokens": args.max_new_tokens, "seed": args.seed, "decoding": "greedy",
              "score_as_attribute": args.score_as_attribute}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    checks, rows = [], []
    for attribute in args.attribute:
        check = attribute_steering_check(sampler, reward, prompts, attribute, low=args.low, high=args.high,
                                         base=base, max_new_tokens=args.max_new_tokens, seed=args.seed,
                                         n_resamples=args.n_resamples, contexts=contexts,
                                         score_as_attribute=args.score_as_attribute)
        checks.append(check.as_dict())
        rows.extend({"attribute": attribute, **s} for s in check.samples)
        s, m = check.shift[attribute], check.moved_up
        print(f"{attribute} {args.low}→{args.high}: Δ{attribute} = {s.value:+.4f} [{s.low:+.4f}, {s.high:+.4f}] "
              f"(paired, {s.n} prompts); moved up on {m.value:.0%} [{m.low:.0%}, {m.high:.0%}]")
    (out / "steering.json").write_text(json.dumps({"checks": checks, **config}, indent=2, ensure_ascii=False))
    write_jsonl(out / "samples.jsonl", rows)
    print(f"wrote {out}/steering.json and samples.jsonl")
    return 0
