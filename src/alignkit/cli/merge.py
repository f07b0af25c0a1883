"""`alignkit merge`: merge fine-tuned checkpoints of one base (alignkit.merge); writes a plain HF model."""

from __future__ import annotations

import argparse

from alignkit.cli import add_command
from alignkit.rewards.registry import ALLOW_CODE_REWARDS_HELP

EXAMPLES = """  alignkit merge --base smollm2-135m-instruct --models runs/sft/final runs/dpo/final \\
      --method self_positioning --probe probe.jsonl --output-dir runs/merged      # λ by gradient on the probe
  alignkit merge --base smollm2-135m-instruct --models runs/sft/final runs/dpo/final \\
      --method grid --probe prompts.jsonl --reward csr --compare ties linear --output-dir runs/merged-grid
  alignkit merge --base B --models M1 M2 --method ties --set density=0.3 --output-dir runs/ties
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "merge", "Merge fine-tuned checkpoints of one base model: coefficients searched on a probe "
                    "set (self_positioning: gradient on SFT/DPO probe losses; grid: any reward) or fixed rules "
                    "(task_arithmetic, linear, ties, dare_*); writes a plain HF model and merge.json.", EXAMPLES)
    p.add_argument("config", nargs="?", help="YAML config (keys as in alignkit.merge.run.MergeConfig)")
    p.add_argument("--base", help="the common base model spec")
    p.add_argument("--models", nargs="+", help="fine-tuned checkpoints, in chain order (e.g. SFT then DPO)")
    p.add_argument("--method", help="self_positioning (default), grid, task_arithmetic, linear, ties, dare_linear, "
                   "dare_ties")
    p.add_argument("--anchor", choices=["chain", "base"], help="task vectors from the previous checkpoint (chain, "
                   "default) or all from the base")
    p.add_argument("--lambdas", nargs="+", type=float, help="fixed methods: the per-checkpoint weights")
    p.add_argument("--probe", help="probe JSONL tagged by `task` (sft/dpo rows for the gradient; prompts for grid)")
    p.add_argument("--reward", help="grid: reward spec scoring sampled answers (csr, ifeval, rm:DIR, ...)")
    p.add_argument("--compare", nargs="+", help="fixed methods to score on the same probe for comparison")
    p.add_argument("--output-dir", help="directory for the merged model")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    p.add_argument("--allow-code-rewards", action="store_true", help=ALLOW_CODE_REWARDS_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.config import load_config, parse_override
    from alignkit.merge.run import MergeConfig, run_merge
    from alignkit.rewards.registry import check_config_rewards

    base = {"base": args.base, "models": args.models, "method": args.method, "anchor": args.anchor,
            "lambdas": args.lambdas, "probe": args.probe, "reward": args.reward, "compare": args.compare,
            "output_dir": args.output_dir, "overwrite": True if args.overwrite else None}
    cfg = load_config(MergeConfig, args.config, args.set, base=base)
    if cfg.method == "grid" or cfg.compare:
        check_config_rewards(cfg.reward, [args.reward, *(parse_override(o)[1] for o in args.set)],
                             source=args.config, allow=args.allow_code_rewards)
    summary = run_merge(cfg)
    print(f"λ = {summary['lambdas']}")
    if "probe_metrics" in summary:
        print(f"probe: {summary['probe_metrics']}")
        for name, m in summary.get("comparison", {}).items():
            print(f"  {name}: {m}")
    print(f"wrote {cfg.output_dir} (plain HF model) and {cfg.output_dir}/merge.json")
    return 0
