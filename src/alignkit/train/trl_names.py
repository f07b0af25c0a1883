"""TRL / `transformers.TrainingArguments` / LLaMA-Factory key names that `TrainConfig` accepts (issue #16.6), so a
config written for those tools runs with at most the objective name changed. docs/migrating-from-trl.md has the
table; `alignkit.config` explains how aliases resolve (per layer, the last layer wins).

Each entry maps a foreign key to alignkit's dotted key, or to a function of the value returning
`{dotted key: value}` where the meaning needs translating (a loss name to an objective, `bf16: true` to a
mixed-precision mode).
"""

from __future__ import annotations

from typing import Any

from alignkit.errors import ConfigError

# TRL DPOConfig.loss_type (and LLaMA-Factory's pref_loss) -> alignkit objective name. A loss TRL has and alignkit
# does not is an error naming the objectives alignkit has, not a silent fallback to DPO.
LOSS_TYPES: dict[str, str] = {
    "sigmoid": "dpo", "robust": "robust", "ipo": "ipo", "hinge": "hinge", "nca_pair": "nca",
    "bco_pair": "bco_pair", "sppo_hard": "sppo_hard", "apo_zero": "apo_zero", "discopop": "discopop",
    "simpo": "simpo", "orpo": "orpo", "kto": "kto", "sft": "sft",
}
# LLaMA-Factory's `stage`
STAGES: dict[str, str] = {"dpo": "dpo", "kto": "kto", "sft": "sft"}


def _objective_from(table: dict[str, str], key: str) -> Any:
    def translate(value: Any) -> dict[str, Any]:
        names = value if isinstance(value, list) else [value]
        if len(names) != 1:  # TRL ≥ 0.2x lets loss_type list several weighted losses
            raise ConfigError(f"{key}: alignkit trains one objective at a time; got {value!r}")
        name = str(names[0])
        if name not in table:
            raise ConfigError(f"{key}: {name!r} has no alignkit objective; known: {sorted(table)} "
                              "(or set `objective` to any name `alignkit objectives` lists)")
        return {"objective": table[name]}
    return translate


def _precision(name: str) -> Any:
    def translate(value: Any) -> dict[str, Any]:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return {"mixed_precision": name} if value else {}
    return translate


def _finetuning_type(value: Any) -> dict[str, Any]:
    if value not in ("lora", "full"):
        raise ConfigError(f"finetuning_type: {value!r}; alignkit supports lora and full")
    return {"use_peft": value == "lora"}


def _lora_target(value: Any) -> dict[str, Any]:
    return {"lora.target_modules": "all-linear" if value == "all" else value}  # LLaMA-Factory's "all"


def _report_to(value: Any) -> dict[str, Any]:
    names = value if isinstance(value, list) else [] if value is None else [value]
    return {"report_to": [n for n in names if n not in ("none", None)]}  # TrainingArguments' "none"


TRAIN_ALIASES: dict[str, Any] = {
    # transformers.TrainingArguments
    "learning_rate": "lr",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "epochs",
    "lr_scheduler_type": "scheduler",
    "lr_scheduler_kwargs": "scheduler_kwargs",
    "logging_steps": "log_every",
    "save_steps": "save_every",
    "eval_steps": "eval_every",
    "save_total_limit": "keep_checkpoints",
    "bf16": _precision("bf16"),
    "fp16": _precision("fp16"),
    "report_to": _report_to,
    "disable_tqdm": lambda v: {"progress": not v},  # (TRL's use_peft is a TrainConfig field of its own)
    "resume_from_checkpoint": lambda v: {"resume": bool(v)},
    # TRL ScriptArguments / ModelConfig / DPOConfig / SFTConfig
    "model_name_or_path": "model",
    "dataset_name": "data",
    "dataset_train_split": "data_split",
    "dataset_test_split": "eval_data_split",
    "loss_type": _objective_from(LOSS_TYPES, "loss_type"),
    "label_smoothing": "objective_args.label_smoothing",
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "lora_target_modules": "lora.target_modules",
    "lora_modules_to_save": "lora.modules_to_save",
    "use_rslora": "lora.use_rslora",
    "use_dora": "lora.use_dora",
    "max_seq_length": "max_length",  # TRL < 0.20's SFTConfig name
    "chat_template_path": "chat_template",
    "ref_model_name_or_path": "reference_model",
    # LLaMA-Factory
    "stage": _objective_from(STAGES, "stage"),
    "pref_beta": "beta",
    "pref_loss": _objective_from(LOSS_TYPES, "pref_loss"),
    "finetuning_type": _finetuning_type,
    "lora_rank": "lora.r",
    "lora_target": _lora_target,
    "cutoff_len": "max_length",
}
