"""The training configuration: one typed dataclass, loaded from YAML plus `--set key=value` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alignkit.errors import ConfigError
from alignkit.models import LoraConfig

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
    """

    model: str = "smollm2-135m-instruct"
    data: str = ""
    eval_data: str | None = None
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
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = 1.0  # 0 disables clipping
    seed: int = 0
    # data
    max_length: int | None = 1024
    max_prompt_length: int | None = 512
    truncation: Literal["keep_end", "drop"] = "keep_end"
    template: Literal["auto", "always", "never"] = "auto"
    shuffle: bool = True
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
    report_to: list[str] = field(default_factory=list)  # "tensorboard"
    resume: bool = False
    overwrite: bool = False  # start over in an output_dir that holds a previous run (deletes it; issue #14.6)
    progress: bool = True

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
        unknown = [r for r in self.report_to if r not in ("tensorboard",)]
        if unknown:
            raise ConfigError(f"report_to: unsupported {unknown}; supported: tensorboard")

    def objective_hparams(self) -> dict[str, Any]:
        args = dict(self.objective_args)
        if self.beta is not None:
            args.setdefault("beta", self.beta)
        return args
