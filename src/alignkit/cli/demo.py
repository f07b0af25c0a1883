"""`alignkit demo`: the main job, end to end on the embedded model, offline, resumable."""

from __future__ import annotations

import argparse

from alignkit.cli import add_command

EXAMPLES = """  alignkit demo                         # full run: 2 RFT rounds of 80 train prompts, 160 test prompts (48 for best-of-N and QAlign)
  alignkit demo --quick                 # smaller: 1 round of 32 train prompts, 16 test prompts
  alignkit demo --output-dir runs/demo2 --set n_test_prompts=64
  alignkit demo                         # after an interrupt: finished stages are skipped
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", "Run the whole loop on the embedded SmolLM2-135M: evaluate, sample and verify, "
                    "train (on-policy RFT rounds), best-of-N and QAlign, report with paired gains.", EXAMPLES)
    p.add_argument("config", nargs="?", help="YAML config (keys as in DemoConfig)")
    p.add_argument("--quick", action="store_true", help="smaller sets (1 round of 32 train / 16 test prompts)")
    p.add_argument("--model", help="model spec (default: smollm2-135m-instruct)")
    p.add_argument("--output-dir", help="where the runs and report.html go (default runs/demo)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.config import load_config
    from alignkit.demo import DemoConfig, run_demo

    cfg = load_config(DemoConfig, args.config, args.set,
                      base={"model": args.model, "output_dir": args.output_dir, "quick": args.quick or None})
    run_demo(cfg)
    return 0
