"""`alignkit restore`: recover the alignment a fine-tuned model lost by copying back a sparse set of weights from
the aligned model, with rollback when task utility drops (wave2_feedback_safety.md §6; docs/safety.md)."""

from __future__ import annotations

import argparse
import json

from alignkit.cli import add_command

EXAMPLES = """\
  alignkit restore --aligned smollm2-135m-instruct --finetuned runs/task/final \\
      --harmful-prompts harmful.jsonl --task-data task.jsonl --output-dir runs/restored
  alignkit restore --aligned A --finetuned F --harmful-prompts P --task-data T --output-dir OUT \\
      --set restore_rate=0.001 --set layer_end=20 --set rollback=never
  alignkit safety data harmful --out harmful.jsonl      # project-made harmful prompts (seeded)
config keys (--set): layer_end, restore_rate, rollback_rate, metric_drop, warmup_steps, total_steps, save_every,
batch_size, rollback (auto|never|always), accumulate_grads, strict_threshold, exclude, template, track_cosine
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "restore", "Restore alignment after fine-tuning: sparse weight restoration with rollback "
                    "(writes a plain HF model and a harmfulness/utility report).", EXAMPLES)
    p.add_argument("--aligned", required=True, metavar="MODEL", help="the aligned model θ_A (spec or directory)")
    p.add_argument("--finetuned", required=True, metavar="MODEL",
                   help="the fine-tuned model θ_F (a LoRA adapter directory is merged first)")
    p.add_argument("--harmful-prompts", required=True, metavar="P.jsonl", help="rows with 'prompt'")
    p.add_argument("--task-data", required=True, metavar="T.jsonl",
                   help="SFT rows (prompt, completion): task direction and utility metric")
    p.add_argument("--eval-prompts", metavar="E.jsonl", help="harmful prompts to measure the harmful rate on "
                   "(default: --harmful-prompts)")
    p.add_argument("--judge", metavar="SPEC", help="harm judge: 'refusal' (default heuristic) or a reward spec, "
                   "harmful iff score > --judge-threshold")
    p.add_argument("--judge-threshold", type=float, default=0.5)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", metavar="YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_restore)


def cmd_restore(args: argparse.Namespace) -> int:
    from alignkit.config import load_config
    from alignkit.safety.restore import RestoreConfig
    from alignkit.safety.restore_run import run_restore

    cfg = load_config(RestoreConfig, args.config, args.overrides)
    report = run_restore(args.aligned, args.finetuned, args.harmful_prompts, args.task_data, args.output_dir,
                         cfg=cfg, eval_prompts=args.eval_prompts, judge=args.judge,
                         judge_threshold=args.judge_threshold, max_new_tokens=args.max_new_tokens,
                         overwrite=args.overwrite, seed=args.seed)
    hr, ut = report["harmful_rate"], report["utility"]
    print(json.dumps({"harmful_rate_finetuned": hr["finetuned"]["value"], "harmful_rate_restored":
                      hr["restored"]["value"], "utility_finetuned": ut["finetuned"], "utility_restored":
                      ut["restored"], "chosen_step": report["restore"]["chosen_step"], "model": report["model_dir"]}))
    return 0
