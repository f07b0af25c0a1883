"""`alignkit loop run FILE`: an iterative self-alignment loop (I-SHEEP or CycleAlign; alignkit.pipelines.loop)."""

from __future__ import annotations

import argparse

from alignkit.cli import add_command
from alignkit.rewards.registry import ALLOW_CODE_REWARDS_HELP

EXAMPLES = """  alignkit loop run recipes/isheep.yaml                       # self-instruct, self-assess, SFT from the base
  alignkit loop run recipes/cyclealign.yaml --set rounds=2     # black-box ranking agreement, ranking loss
  alignkit loop run recipes/isheep.yaml --set isheep.threshold=7 --set isheep.judge=base
  alignkit loop run recipes/isheep.yaml                       # after an interrupt: resumes at the unfinished stage
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "loop", "Iterative self-alignment: generate with the current model, (self-)judge, filter, "
                    "train, repeat, with a per-round evaluation table (I-SHEEP, CycleAlign).", EXAMPLES)
    verbs = p.add_subparsers(dest="loop_command", metavar="VERB")
    run_p = add_command(verbs, "run", "run or resume a loop YAML (keys as in LoopConfig)", EXAMPLES,
                        description="Run or resume a loop YAML (keys as in alignkit.pipelines.loop.LoopConfig; "
                        "method sections `isheep:` / `cyclealign:`). Finished stages are skipped; a rerun with "
                        "other settings is refused.")
    run_p.add_argument("config", help="loop YAML")
    run_p.add_argument("--model", help="base model spec M_0 (overrides the file)")
    run_p.add_argument("--output-dir", help="run directory (overrides the file)")
    run_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any key (dotted for the method sections: isheep.threshold=7)")
    run_p.add_argument("--allow-code-rewards", action="store_true", help=ALLOW_CODE_REWARDS_HELP)
    run_p.set_defaults(func=run)
    p.set_defaults(func=lambda _a: p.print_help() or 0)


def run(args: argparse.Namespace) -> int:
    from alignkit.config import load_config, parse_override
    from alignkit.pipelines.loop import LoopConfig, format_table, run_loop
    from alignkit.rewards.registry import check_config_rewards

    cfg = load_config(LoopConfig, args.config, args.set, base={"model": args.model, "output_dir": args.output_dir})
    if cfg.eval_reward:  # a code reward in a config file runs only when the user says so (issue #14.16)
        check_config_rewards(cfg.eval_reward, [parse_override(o)[1] for o in args.set], source=args.config,
                             allow=args.allow_code_rewards)
    table = run_loop(cfg)
    print(format_table(table))
    return 0
