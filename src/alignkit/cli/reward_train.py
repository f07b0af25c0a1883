"""`alignkit reward train`: train a reward model (BT, HelpSteer2 regression, MORE, PAL-B, principle-conditioned BT)
on the offline engine; hooked into `alignkit reward` by `alignkit.cli.reward`."""

from __future__ import annotations

import argparse
import json

from alignkit.cli import add_command
from alignkit.config import load_config

EXAMPLES = """\
  alignkit reward train --objective bt --model smollm2-135m-instruct --data pairs.jsonl --eval-data held.jsonl \\
      --output-dir runs/rm --set lr=1e-5 --set center_coef=0.01
  alignkit reward train --objective bt --model smollm2-135m-instruct --data pairs.jsonl --output-dir runs/rm \\
      --tune lora --set lora.r=8 --set margin=small --set rating_field=rating
  alignkit reward train --objective regression --data helpsteer2.jsonl --output-dir runs/hs2   # scored rows
  alignkit reward train --objective more --data mixed.jsonl --output-dir runs/more --set batch_size=4  # `task` column
  alignkit reward train --objective pal --data users.jsonl --output-dir runs/pal --set pal_k=2   # `user` column
  alignkit reward train --objective principle --data pairs.jsonl --output-dir runs/p \\
      --set 'principles=[Be honest, Be concise]'                    # or a `principle` column per row
  alignkit reward train --objective critique --data critiqued_pairs.jsonl --output-dir runs/crm  # chosen_critique,
                                                                    # rejected_critique columns (MM-RLHF)
  alignkit reward train --objective remodetect --model rm:runs/rm/final --data triplets.jsonl \
      --set replay_data=replay.jsonl --output-dir runs/remodetect      # `alignkit safety remodetect-data`
then: alignkit reward eval --reward rm:runs/rm/final --data held.jsonl --out-dir runs/rm-eval
writes: config.yaml, metrics.jsonl, checkpoints/, final/ (the RM directory), summary.json, eval.json and
reliability.png (with eval data: --eval-data or --set eval_split=0.1). A directory that holds a run is refused:
rerun with --resume to continue it, or --overwrite to start again.
"""

# = alignkit.rewards.training.config.OBJECTIVES, spelled out so that building the parser does not import torch
RM_OBJECTIVES = ["bt", "regression", "more", "pal", "principle", "critique", "remodetect"]


def add_train_parser(actions: argparse._SubParsersAction) -> None:
    p = add_command(actions, "train", "Train a reward model (bt, regression, more, pal, principle, critique, "
                    "remodetect).", EXAMPLES)
    p.add_argument("--objective", choices=RM_OBJECTIVES, help="RM objective (default bt)")
    p.add_argument("--model", help="backbone model spec, or an RM directory to continue (default "
                   "smollm2-135m-instruct)")
    p.add_argument("--data", help="training data: pairs (bt/more/pal/principle), scored rows (regression) or "
                   "(LLM, mixed, human) lists (remodetect)")
    p.add_argument("--eval-data", help="held-out data of the same kind; evaluated during and after training")
    p.add_argument("--output-dir", help="run directory (default runs/reward)")
    p.add_argument("--tune", choices=["full", "lora", "head"], help="what trains (default full)")
    p.add_argument("--max-steps", type=int, help="optimiser steps (default: one epoch)")
    p.add_argument("--config", metavar="YAML", help="RewardTrainConfig YAML; flags and --set override it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set lr=1e-5 --set lora.r=8 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start over although --output-dir holds a previous run (deletes its checkpoints and final/)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from alignkit.rewards.training import RewardTrainConfig, train_reward_model

    base = {"objective": args.objective, "model": args.model, "data": args.data, "eval_data": args.eval_data,
            "output_dir": args.output_dir, "tune": args.tune, "max_steps": args.max_steps,
            "resume": True if args.resume else None, "overwrite": True if args.overwrite else None}
    cfg = load_config(RewardTrainConfig, args.config, args.overrides, base=base)
    result = train_reward_model(cfg)
    print(f"trained a {cfg.objective} reward model for {result.steps} steps; RM directory: {result.final_dir}")
    if result.eval:
        shown = {k: result.eval[k] for k in ("accuracy", "auroc", "ece", "mse") if k in result.eval}
        print(f"eval ({result.eval.get('examples')} examples): {json.dumps(shown)} -> "
              f"{result.run_dir / 'eval.json'}")
    print(f"score with: alignkit reward score --reward rm:{result.final_dir} ...")
    return 0
