"""`alignkit eval`: evaluate a model or a samples file on a prompt set; writes a run directory."""

from __future__ import annotations

import argparse

from alignkit.cli import add_command
from alignkit.rewards.registry import ALLOW_CODE_REWARDS_HELP

EXAMPLES = """  alignkit eval --model smollm2-135m-instruct --prompts suite:test --reward csr --output-dir runs/base-eval
  alignkit eval --model runs/dpo/final --reference-model smollm2-135m-instruct --temperature 1 \\
      --baseline runs/base-eval --output-dir runs/dpo-eval
  alignkit eval --samples runs/bon/samples.jsonl --prompts suite:test --reward ifeval --output-dir runs/bon-eval
  alignkit eval CONFIG.yaml --set limit=32
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "eval", "Evaluate a model (or samples): constraint accuracy, reward, win rate, KL, "
                    "each with a bootstrap CI.", EXAMPLES)
    p.add_argument("config", nargs="?", help="YAML config (keys as in EvalConfig)")
    p.add_argument("--model", help="model spec: smollm2-135m-instruct, tiny-random, or an HF directory")
    p.add_argument("--samples", help="score this samples.jsonl instead of generating")
    p.add_argument("--prompts", help="suite:test, suite:train, a prompt file (JSONL/JSON/Parquet/CSV/datasets "
                   "folder) or a cached hub dataset id")
    p.add_argument("--split", help="split of a datasets folder or hub dataset given as --prompts (NAME:SPLIT)")
    p.add_argument("--reward", help="reward spec (csr, ifeval, bleu, keyword:..., module:function, rm:DIR)")
    p.add_argument("--reference-model", help="reference model for the KL estimate (needs --temperature 1: the "
                   "estimate averages over samples of the policy itself)")
    p.add_argument("--baseline", help="run directory (or samples.jsonl) on the same prompt ids: win rate and "
                   "paired differences (its completions are rescored unless it used the same --reward)")
    p.add_argument("--limit", type=int, help="evaluate only the first N prompts")
    p.add_argument("--temperature", type=float, help="0 = greedy (default); with --samples, the temperature "
                   "they were drawn at")
    p.add_argument("--output-dir", help="run directory to write")
    p.add_argument("--template", choices=("auto", "always", "never", "chat-only"),
                   help="plain-string prompts as in training: auto (chat template if any; default), never, always, "
                   "chat-only (TRL's: only chat-message prompts are templated)")
    p.add_argument("--chat-template", metavar="FILE", help="a Jinja chat template file replacing the tokenizer's "
                   "(as train --chat-template)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    p.add_argument("--allow-code-rewards", action="store_true", help=ALLOW_CODE_REWARDS_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.config import load_config, parse_override
    from alignkit.evaluate.evaluation import EvalConfig, evaluate
    from alignkit.evaluate.report import print_summary, summary_table
    from alignkit.rewards.registry import check_config_rewards

    prompts = args.prompts
    if prompts and args.split:  # one reader for every command: NAME:SPLIT (alignkit.data.readers.named)
        prompts = f"{prompts}:{args.split}"
    base = {"model": args.model, "samples": args.samples, "prompts": prompts, "reward": args.reward,
            "reference_model": args.reference_model, "baseline": args.baseline, "limit": args.limit,
            "temperature": args.temperature, "output_dir": args.output_dir, "template": args.template,
            "chat_template": args.chat_template}
    cfg = load_config(EvalConfig, args.config, args.set, base=base)
    # A code reward (module:function, file.py:function) named by the config file needs explicit consent (#14.16).
    check_config_rewards(cfg.reward, [args.reward, *(parse_override(o)[1] for o in args.set)], source=args.config,
                         allow=args.allow_code_rewards)
    if cfg.samples and not args.model:
        cfg.model = None
    evaluate(cfg)
    print_summary(summary_table([cfg.output_dir]))
    print(f"wrote {cfg.output_dir}/eval.json and samples.jsonl")
    return 0
