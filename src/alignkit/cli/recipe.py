"""`alignkit recipe run FILE`: an iterated on-policy alignment recipe (alignkit.pipelines.recipe), resumable."""

from __future__ import annotations

import argparse

from alignkit.cli import add_command
from alignkit.rewards.registry import ALLOW_CODE_REWARDS_HELP

EXAMPLES = """  alignkit recipe run recipes/constraints.yaml                     # the measured CPU recipe (docs/efficacy.md)
  alignkit recipe run recipes/constraints.yaml --set rounds=1 --set method=dpo
  alignkit recipe run recipes/constraints.yaml                     # after an interrupt: resumes
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "recipe", "Run an iterated alignment recipe: evaluate the base, sample from the current "
                    "policy, verify, select, train, repeat; evaluate against the base with a paired interval.",
                    EXAMPLES)
    verbs = p.add_subparsers(dest="recipe_command", metavar="VERB")
    run_p = verbs.add_parser("run", help="run or resume a recipe YAML (keys as in RecipeConfig)",
                             description="Run or resume a recipe YAML (keys as in alignkit.pipelines.recipe."
                             "RecipeConfig). Finished stages are skipped; a rerun with other settings is refused.",
                             epilog="examples:\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_p.add_argument("config", help="recipe YAML")
    run_p.add_argument("--model", help="model spec (overrides the file)")
    run_p.add_argument("--output-dir", help="run directory (overrides the file)")
    run_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any key")
    run_p.add_argument("--allow-code-rewards", action="store_true", help=ALLOW_CODE_REWARDS_HELP)
    run_p.set_defaults(func=run)
    p.set_defaults(func=lambda _a: p.print_help() or 0)


def run(args: argparse.Namespace) -> int:
    from alignkit.config import load_config, parse_override
    from alignkit.evaluate.report import print_summary, summary_table
    from alignkit.pipelines.recipe import RecipeConfig, run_recipe
    from alignkit.rewards.registry import check_config_rewards

    cfg = load_config(RecipeConfig, args.config, args.set,
                      base={"model": args.model, "output_dir": args.output_dir})
    # A recipe file is a config file: a code reward in it runs only when the user says so (issue #14.16).
    check_config_rewards(cfg.reward, [parse_override(o)[1] for o in args.set], source=args.config,
                         allow=args.allow_code_rewards)
    final = run_recipe(cfg)
    from pathlib import Path

    root = Path(cfg.output_dir)
    print_summary(summary_table([root / "base-eval", root / "final-eval"]))
    paired = final.get("paired_vs_baseline", {}).get("constraint_accuracy")
    if paired:
        print(f"paired gain over base (strict prompt-level accuracy): {100 * paired['value']:+.1f} points, "
              f"95% CI [{100 * paired['low']:+.1f}, {100 * paired['high']:+.1f}] over {paired['n']} prompts")
    for warning in final.get("guard_warnings", []):
        print(f"warning: {warning}")
    return 0
