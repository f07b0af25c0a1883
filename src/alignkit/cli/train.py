"""`alignkit train` and `alignkit export`: thin wrappers over `alignkit.train.engine`."""

from __future__ import annotations

import argparse
from typing import Any

from alignkit.cli import add_command, add_set_flag
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
    add_set_flag(p, "override a config key (dotted for nested: lora.r=8, objective_args.beta=0.2)")
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
    add_trl_flags(p)
    p.set_defaults(func=run_train, interrupt_hint="rerun with --resume to continue from the last checkpoint")

    e = add_command(sub, "export", "Write a run's trained model as a plain HF directory (LoRA merged).",
                    EXPORT_EXAMPLES)
    e.add_argument("run_dir", help="a run directory written by `alignkit train`")
    e.add_argument("out", help="output directory")
    e.add_argument("--overwrite", action="store_true", help="replace an existing OUT (atomically, once complete)")
    e.add_argument("--push-to-hub", action="store_true", help="also upload OUT (with a model card) to the hub")
    e.add_argument("--hub-model-id", help="hub repository for --push-to-hub (default: OUT's name)")
    e.add_argument("--hub-private-repo", action="store_true", default=None, help="create the repository private")
    e.set_defaults(func=run_export)


# The common TRL / transformers.TrainingArguments flags, under their own names (issue #16.6): each goes to the
# config as that key and resolves through TrainConfig's aliases (alignkit.train.trl_names), so `--learning-rate`
# and `--set lr=...` are the same setting. (flag, type or action, help)
TRL_FLAGS: tuple[tuple[str, Any, str], ...] = (
    ("--split", str, "split of a datasets folder or hub dataset given as --data (TRL's dataset_train_split)"),
    ("--learning-rate", float, "= lr"),
    ("--per-device-train-batch-size", int, "= batch_size (examples per process per micro-step)"),
    ("--gradient-accumulation-steps", int, "= grad_accum"),
    ("--num-train-epochs", float, "= epochs"),
    ("--max-steps", int, "optimiser steps (0: from epochs)"),
    ("--warmup-ratio", float, "warmup as a fraction of the steps (when warmup_steps is 0)"),
    ("--lr-scheduler-type", str, "= scheduler: any transformers.get_scheduler name (linear, cosine, ...)"),
    ("--logging-steps", int, "= log_every"),
    ("--save-steps", int, "= save_every"),
    ("--seed", int, "random seed"),
    ("--beta", float, "the objective's beta"),
    ("--loss-type", str, "TRL DPOConfig loss_type (sigmoid -> dpo, ipo, hinge, ...), picks the objective"),
    ("--bf16", "store_true", "bf16 autocast (mixed_precision: bf16)"),
    ("--use-peft", "store_true", "train a LoRA adapter (rank 16 unless --lora-r)"),
    ("--lora-r", int, "= lora.r"),
    ("--lora-alpha", int, "= lora.alpha"),
    ("--lora-target-modules", str, "= lora.target_modules: comma-separated names or all-linear"),
    ("--report-to", str, "trackers, comma-separated: tensorboard, wandb, trackio, mlflow (or none)"),
    ("--template", str, "plain-string prompts: auto (chat template if any), never, always, chat-only (TRL's)"),
    ("--chat-template", str, "a Jinja chat template file replacing the tokenizer's"),
    ("--push-to-hub", "store_true", "upload final/ and a model card to the hub after training"),
    ("--hub-model-id", str, "hub repository id for --push-to-hub (default: the output directory's name)"),
)


def add_trl_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TRL / transformers names (each is also a config key, e.g. --set learning_rate=1e-5)")
    for flag, kind, help_text in TRL_FLAGS:
        dest = flag[2:].replace("-", "_")
        if kind == "store_true":
            g.add_argument(flag, dest=f"trl_{dest}", action="store_true", default=None, help=help_text)
        else:
            g.add_argument(flag, dest=f"trl_{dest}", type=kind, help=help_text)


def trl_flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The TRL-named flags given, as config keys (`split` -> `data_split`; list flags split on commas)."""
    out: dict[str, Any] = {}
    for flag, _, _ in TRL_FLAGS:
        key = flag[2:].replace("-", "_")
        value = getattr(args, f"trl_{key}", None)
        if value is None:
            continue
        if key in ("report_to", "lora_target_modules"):
            value = [v.strip() for v in value.split(",") if v.strip()]
        out["data_split" if key == "split" else key] = value
    return out


def build_config(args: argparse.Namespace):  # noqa: ANN201 - TrainConfig, imported lazily
    from pathlib import Path

    from alignkit.config import load_config, parse_override
    from alignkit.rewards.registry import check_config_rewards
    from alignkit.train.config import TrainConfig

    config = args.config
    if config is None and args.resume and args.output_dir and (Path(args.output_dir) / "config.yaml").exists():
        config = str(Path(args.output_dir) / "config.yaml")
    base = {"model": args.model, "data": args.data, "eval_data": args.eval_data, "objective": args.objective,
            "output_dir": args.output_dir, "on_bad_record": args.on_bad_record, **trl_flag_values(args)}
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
    if getattr(args, "push_to_hub", False):
        from pathlib import Path

        from alignkit.config import load_config
        from alignkit.hub import hub_repo_id, prepare_upload, push_folder
        from alignkit.train.config import TrainConfig

        cfg = load_config(TrainConfig, Path(args.run_dir) / "config.yaml")
        repo_id = hub_repo_id(args.hub_model_id, out)
        prepare_upload(out, repo_id, base_model=cfg.model, objective=cfg.objective, data=cfg.data, lora=False,
                       settings={"objective": cfg.objective, "lr": cfg.lr, "max_steps": cfg.max_steps})
        print(f"pushed {out} to the hub: {push_folder(out, repo_id, private=args.hub_private_repo)}")
    return 0
