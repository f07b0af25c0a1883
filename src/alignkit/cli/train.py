"""`alignkit train` and `alignkit export`: thin wrappers over `alignkit.train.engine`."""

from __future__ import annotations

import argparse

from alignkit.cli import add_command
from alignkit.rewards.registry import ALLOW_CODE_REWARDS_HELP

TRAIN_EXAMPLES = """  alignkit train --model tiny-random --data pairs.jsonl --objective dpo --output-dir runs/x
  alignkit train recipe.yaml --set lr=1e-5 --set lora.r=8 --set objective_args.label_smoothing=0.1
  alignkit train --model smollm2-135m-instruct --data pairs.jsonl --objective simpo --set beta=2.0
  alignkit train recipes/act.yaml --set max_steps=2   # online GRPO (also --objective rloo), docs/rl.md
  alignkit train --data pairs.jsonl --objective dckd --set teacher_model=runs/teacher/final
  alignkit train --data judged.jsonl --objective cut       # also poft, bco+udm: docs/training_beyond_pairs.md
  alignkit train --data lists.jsonl --objective lipo_lambda --set shared_prompt=true
  alignkit train --output-dir runs/x --resume            # continue from the latest valid checkpoint
  alignkit train recipe.yaml --overwrite                 # start over in a run directory that holds a run
  torchrun --nproc_per_node 2 -m alignkit train recipe.yaml   # data parallel (gloo on CPU)
"""

EXPORT_EXAMPLES = """  alignkit export runs/x exported/       # LoRA merged; loads with AutoModelForCausalLM.from_pretrained
  alignkit export runs/x exported/ --overwrite   # replace an existing export (swapped in when complete)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", "Train a policy with a preference or SFT objective (one offline engine).",
                    TRAIN_EXAMPLES)
    p.add_argument("config", nargs="?", help="YAML training config (keys: see docs/training.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted for nested: lora.r=8, objective_args.beta=0.2)")
    p.add_argument("--model", help="model spec: smollm2-135m-instruct, tiny-random, or a local HF directory")
    p.add_argument("--data", help="training data file (JSONL/JSON/Parquet/CSV) of the objective's data kind")
    p.add_argument("--eval-data", help="held-out data file (else --set eval_split=0.1)")
    p.add_argument("--objective", help="objective name, e.g. dpo, ipo, simpo, orpo, kto, sft")
    p.add_argument("--output-dir", help="run directory (config.yaml, metrics.jsonl, checkpoints/, final/)")
    p.add_argument("--on-bad-record", choices=("error", "skip"),
                   help="a bad data record stops training (error, default) or is skipped and counted (skip: the "
                        "summary is printed and written to OUTPUT_DIR/data_skipped.json)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest valid checkpoint in --output-dir (its config.yaml is reused)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over although --output-dir holds a previous run (deletes its checkpoints)")
    p.add_argument("--allow-code-rewards", action="store_true", help=ALLOW_CODE_REWARDS_HELP)
    p.set_defaults(func=run_train, interrupt_hint="rerun with --resume to continue from the last checkpoint")

    e = add_command(sub, "export", "Write a run's trained model as a plain HF directory (LoRA merged).",
                    EXPORT_EXAMPLES)
    e.add_argument("run_dir", help="a run directory written by `alignkit train`")
    e.add_argument("out", help="output directory")
    e.add_argument("--overwrite", action="store_true", help="replace an existing OUT (atomically, once complete)")
    e.set_defaults(func=run_export)


def build_config(args: argparse.Namespace):  # noqa: ANN201 - TrainConfig, imported lazily
    from pathlib import Path

    from alignkit.config import load_config, parse_override
    from alignkit.rewards.registry import check_config_rewards
    from alignkit.train.config import TrainConfig

    config = args.config
    if config is None and args.resume and args.output_dir and (Path(args.output_dir) / "config.yaml").exists():
        config = str(Path(args.output_dir) / "config.yaml")
    base = {"model": args.model, "data": args.data, "eval_data": args.eval_data, "objective": args.objective,
            "output_dir": args.output_dir, "on_bad_record": args.on_bad_record}
    cfg = load_config(TrainConfig, config, args.overrides, base)
    # A reward spec that imports code (objective_args.reward of online RL) must not run just because a config
    # file names it (issue #14 item 16); what was typed on the command line is trusted.
    check_config_rewards(cfg.objective_args.get("reward"), [parse_override(o)[1] for o in args.overrides],
                         source=config, allow=getattr(args, "allow_code_rewards", False))
    if args.resume:
        cfg.resume = True
    if getattr(args, "overwrite", False):
        cfg.overwrite = True
    return cfg


def run_train(args: argparse.Namespace) -> int:
    from alignkit.train.engine import train

    cfg = build_config(args)
    from alignkit.rl.config import ONLINE_OBJECTIVES

    if cfg.objective in ONLINE_OBJECTIVES:  # online RL: alignkit.rl (docs/rl.md)
        from alignkit.rl.trainer import run_online

        online = run_online(cfg)
        print(f"trained {online.steps} rollout steps; run directory: {online.run_dir}")
        return 0
    result = train(cfg)
    print(f"trained {result.steps} steps (reference: {result.reference}); run directory: {result.run_dir}")
    last = {k: v for k, v in result.loop.last_metrics.items() if isinstance(v, float)}
    if last:
        print("last: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(last.items())))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from alignkit.train.engine import export

    out = export(args.run_dir, args.out, overwrite=args.overwrite)
    print(f"exported {args.run_dir} to {out}")
    return 0
