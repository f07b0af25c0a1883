"""The training configuration: one typed dataclass, loaded from YAML plus `--set key=value` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from alignkit.errors import ConfigError
from alignkit.models import LoraConfig
from alignkit.runtime import SCHEDULERS
from alignkit.train.trl_names import TRAIN_ALIASES

# `report_to` names: Accelerate's trackers (alignkit.train.trackers)
TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow")
# TRL's ModelConfig default rank when `use_peft: true` names no `lora_r`
TRL_LORA_R = 16

# CUT's judgment context (spec §4.1: the prompt followed by a judgment block the response should match); applied
# to the last user message, before the chat template.
JUDGMENT_TEMPLATE = ("{prompt}\n\n### Judgment of the response:\n{judgment}\n\n"
                     "Write a response that matches this judgment.")

ReferenceMode = Literal["auto", "precompute", "adapter", "separate", "none"]


@dataclass
class TrainConfig:
    """Everything `alignkit train` reads. Defaults follow TRL's DPOConfig where one exists.

    Batch semantics: `batch_size` examples per process per micro-step; one optimiser step sees
    `batch_size × grad_accum × world_size` examples (the global batch).

    TRL / `transformers.TrainingArguments` / LLaMA-Factory names are accepted as aliases (`learning_rate`,
    `per_device_train_batch_size`, `lora_r`, `loss_type` ...): `alignkit.train.trl_names`.
    """

    CONFIG_ALIASES: ClassVar[dict[str, Any]] = TRAIN_ALIASES

    model: str = "smollm2-135m-instruct"
    data: str = ""
    data_split: str | None = None  # split of a datasets folder / hub dataset (TRL's dataset_train_split)
    eval_data: str | None = None
    eval_data_split: str | None = None  # eval split; with no eval_data, of `data` (TRL's dataset_test_split)
    eval_split: float = 0.0  # fraction of `data` held out for eval when `eval_data` is not given
    objective: str = "dpo"
    objective_args: dict[str, Any] = field(default_factory=dict)
    beta: float | None = None  # shortcut for objective_args.beta
    output_dir: str = "runs/train"
    # optimisation
    batch_size: int = 4
    eval_batch_size: int | None = None
    grad_accum: int = 1
    lr: float = 5e-7
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    max_steps: int = 0  # 0 → epochs × steps per epoch
    epochs: float = 1.0
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0: ceil(ratio × total steps), as transformers does
    scheduler: str = "linear"  # any transformers.get_scheduler name (TRL's lr_scheduler_type): runtime.SCHEDULERS
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)  # TRL's lr_scheduler_kwargs
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # Accelerate's autocast (TRL's bf16/fp16: true)
    max_grad_norm: float = 1.0  # 0 disables clipping
    seed: int = 0
    # data
    max_length: int | None = 1024
    max_prompt_length: int | None = 512
    truncation: Literal["keep_end", "drop"] = "keep_end"
    # chat template for plain-string prompts: auto (applied when the tokenizer has one), always, never, or
    # chat-only (TRL's rule: only chat-message prompts are templated); docs/data.md
    template: Literal["auto", "always", "never", "chat-only"] = "auto"
    chat_template: str | None = None  # a Jinja file (or the template text) replacing the tokenizer's own
    shuffle: bool = True
    # batches of similar-length examples (transformers' / TRL's group_by_length): less padding, same examples per
    # epoch; train.loop.epoch_order
    group_by_length: bool = False
    # bad data records: stop at the first (error) or skip them, counted, printed and listed in the run
    # directory's data_skipped.json (skip) -- the same policy as `alignkit data validate`
    on_bad_record: Literal["error", "skip"] = "error"
    # model / reference
    reference: ReferenceMode = "auto"
    reference_model: str | None = None  # for `separate`; defaults to `model`
    # `separate`: keep the frozen reference's weights on disk (accelerate's disk_offload) and stream them in module
    # by module for its no-grad forward, so RAM holds one model copy, not two (costs a re-read per reference pass)
    reference_offload: bool = False
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~⅓ more compute
    low_memory_allocator: bool = False  # glibc: return freed activation memory to the OS (train/memory.py)
    lora: LoraConfig = field(default_factory=LoraConfig)
    use_peft: bool | None = None  # TRL's switch: true with lora.r unset trains a rank-16 adapter; false: none
    # objectives beyond pairs (docs/training_beyond_pairs.md)
    teacher_model: str | None = None  # dckd/adpa: the aligned (DPO) teacher; same tokenizer as `model`
    teacher_reference_model: str | None = None  # adpa: the teacher's SFT reference
    teacher_topk: int = 8  # top-k ids per completion position stored from the teacher(s)
    aligned_models: list[str] = field(default_factory=list)  # poft: aligned LLMs scoring each example
    udm_model: str | None = None  # bco: frozen prompt encoder for UDM density-ratio weights
    shared_prompt: bool = False  # encode each prompt once and reuse its KV cache for the K completions
    judgment_template: str = JUDGMENT_TEMPLATE  # cut: the judgment context (spec §4.1); {prompt}, {judgment}
    judged_positive_score: float = 7.0  # cut: score ≥ this (or an empty judgment) is a positive judgment
    torch_threads: int = 0  # 0 leaves torch's default
    # bookkeeping
    save_every: int = 0  # 0 → only at the end
    keep_checkpoints: int = 2
    eval_every: int = 0  # 0 → only at the end (if there is eval data)
    log_every: int = 1
    max_bad_steps: int = 5  # non-finite losses in a row before stopping
    report_to: list[str] = field(default_factory=list)  # Accelerate trackers: tensorboard, wandb, trackio, mlflow
    push_to_hub: bool = False  # upload final/ (with a model card) to `hub_model_id` after training
    hub_model_id: str | None = None  # default: the output_dir's name, as transformers does
    hub_private_repo: bool | None = None
    resume: bool = False
    overwrite: bool = False  # start over in an output_dir that holds a previous run (deletes it; issue #14.6)
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):  # TrainConfig(lora={"r": 8}), as the docs write it
            from alignkit.config import from_dict

            self.lora = from_dict(LoraConfig, self.lora, prefix="lora.")
        if self.use_peft is True and self.lora.r == 0:
            self.lora.r = TRL_LORA_R
        elif self.use_peft is False:
            self.lora.r = 0

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("no training data: set `data` (e.g. --data pairs.jsonl)")
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.max_steps < 0 or self.epochs <= 0 and self.max_steps == 0:
            raise ConfigError("set max_steps > 0 or epochs > 0")
        if not 0.0 <= self.eval_split < 1.0:
            raise ConfigError(f"eval_split must be in [0, 1), got {self.eval_split}")
        if self.on_bad_record not in ("error", "skip"):
            raise ConfigError(f"on_bad_record must be 'error' or 'skip', got {self.on_bad_record!r}")
        if self.max_bad_steps < 1:
            raise ConfigError("max_bad_steps must be ≥ 1")
        if len(self.adam_betas) != 2:
            raise ConfigError(f"adam_betas needs two numbers, got {self.adam_betas}")
        if self.gradient_checkpointing and self.shared_prompt:
            raise ConfigError("gradient_checkpointing and shared_prompt cannot be combined (checkpointed layers "
                              "cannot build the prompt's KV cache); pick one")
        if self.teacher_topk < 1:
            raise ConfigError(f"teacher_topk must be ≥ 1, got {self.teacher_topk}")
        unknown = [r for r in self.report_to if r not in TRACKERS]
        if unknown:
            raise ConfigError(f"report_to: unsupported {unknown}; supported: {', '.join(TRACKERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler {self.scheduler!r} is not one of {list(SCHEDULERS)} "
                              "(transformers.get_scheduler's names)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def objective_hparams(self) -> dict[str, Any]:
        args = dict(self.objective_args)
        if self.beta is not None:
            args.setdefault("beta", self.beta)
        return args
