"""The offline training engine: any registered objective on its data kind, through the one `train_loop`.

`train(cfg)` reads and tokenises the data once, loads the policy (optionally with LoRA), sets up the reference
(precompute / adapter / separate / none), builds an `ObjectiveStep` (one forward per batch through
`CompletionLogProbs`, the objective's loss) and runs `train_loop`. The run directory holds `config.yaml`
(resolved), `metrics.jsonl`, `checkpoints/step-N/`, `final/` (HF model directory, or the LoRA adapter) and
`summary.json`.
"""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.config import save_config
from alignkit.errors import ConfigError
from alignkit.models import load_model, model_fingerprint
from alignkit.objectives import ObjectiveState
from alignkit.objectives.base import ObjectiveSpec, get_objective
from alignkit.rundir import locks_output_dir, replace_dir
from alignkit.runtime import make_accelerator, seed_everything, split_eval  # lived here; re-exported
from alignkit.train.batching import Batch, TokenizedData, collate
from alignkit.train.checkpoint import prepare_from_config
from alignkit.train.config import TrainConfig
from alignkit.train.export import export  # noqa: F401 - re-exported: `alignkit export` lives in train/export.py
from alignkit.train.logps import CompletionLogProbs
from alignkit.train.loop import LoopResult, train_loop
from alignkit.train.memory import release_large_frees
from alignkit.train.reference import (
    Reference,
    cache_key,
    freeze,
    load_or_compute,
    offload_to_disk,
    resolve_mode,
)
from alignkit.train.step import ObjectiveStep  # re-exported: it lived here before issue #22 moved it below
from alignkit.train.steps import build_step, tokenize_data


def read_training_records(path: Any, kind: str, on_bad_record: str = "error",
                          reports: list[Any] | None = None, split: str | None = None) -> list[Any]:
    """Validated records of `kind` from any source `read_records` reads (a file, a datasets directory, a named
    source such as a cached hub id, a `datasets.Dataset`, a list of rows); the `ReadResult` (skip counts,
    FILE:LINE, notes such as pairs unpaired for KTO) goes to `reports`."""
    from alignkit.data.io import read_records

    result = read_records(path, kind, on_bad_record=on_bad_record, split=split)  # type: ignore[arg-type]
    if reports is not None:
        reports.append(result)
    return list(result.records)


class DataSource:
    """`BatchSource` over a TokenizedData."""

    def __init__(self, data: TokenizedData, pad_id: int, with_kl: bool) -> None:
        self.data, self.pad_id, self.with_kl = data, pad_id, with_kl

    def __len__(self) -> int:
        return len(self.data)

    def get(self, indices: list[int]) -> Batch:
        return collate(self.data, indices, self.pad_id, with_kl=self.with_kl)

    def lengths(self) -> list[int]:
        """Tokens of each example's longest sequence: what its batch is padded to (group_by_length)."""
        return [max(len(s.input_ids) for s in e.seqs) for e in self.data.examples]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    reference: str
    final_dir: Path | None
    loop: LoopResult
    summary: dict[str, Any] = field(default_factory=dict)


def check_hparams(spec: ObjectiveSpec, hparams: dict[str, Any]) -> None:
    accepted = set(spec.defaults) | set(inspect.signature(spec.fn).parameters) - {"lp"}
    unknown = sorted(set(hparams) - accepted)
    if unknown:
        raise ConfigError(f"objective {spec.name!r} does not take {unknown}; its arguments: {sorted(accepted)}")


@locks_output_dir(prepare=prepare_from_config)  # lock, writability, previous run: before loading (issue #14)
def train(cfg: TrainConfig, *, records: list[Any] | None = None, eval_records: list[Any] | None = None,
          accelerator: Any = None, log: Any = None, on_checkpoint: Any = None, model: Any = None,
          tokenizer: Any = None) -> TrainResult:
    """Train `cfg.model` on `cfg.data` with `cfg.objective`; returns the run directory and summary.

    `records`/`eval_records` bypass reading files (Python use); `cfg.data` may then be any label.
    `model`/`tokenizer`: an already loaded policy instead of loading `cfg.model` (which is then a label, or the
    base's path for LoRA adapters' `base_model_name_or_path`); the top-level `alignkit.train(...)` passes them.
    `on_checkpoint(step)` is called after each checkpoint (e.g. to stop a run early).
    """
    if records is None:
        cfg.validate()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    accelerator = accelerator or make_accelerator(cfg.mixed_precision)
    main = accelerator.is_main_process
    say = log or (print if main else (lambda _m: None))
    if cfg.low_memory_allocator and not release_large_frees():
        say("low_memory_allocator: not a glibc C library; the allocator is left as it is")
    if cfg.report_to and main:  # a missing tracker package fails now, not after loading the model
        from alignkit.train.trackers import check_trackers

        check_trackers(cfg.report_to)
    seed_everything(cfg.seed)
    spec = get_objective(cfg.objective)
    hparams = cfg.objective_hparams()
    check_hparams(spec, hparams)
    stateful = "state" in spec.defaults
    state: dict[str, Any] | None = ObjectiveState() if stateful else None
    if stateful:
        hparams.pop("state", None)

    kind = spec.data_kind
    data_reports: list[Any] = []  # one ReadResult per file read, for the skip summary (issue #14.5)
    if records is None:
        records = read_training_records(cfg.data, kind, cfg.on_bad_record, data_reports, cfg.data_split)
    if eval_records is None and (cfg.eval_data or cfg.eval_data_split):
        eval_records = read_training_records(cfg.eval_data or cfg.data, kind, cfg.on_bad_record, data_reports,
                                             cfg.eval_data_split)
    for report in data_reports:
        if cfg.on_bad_record == "skip" or report.notes:
            say(report.summary())
    if eval_records is None:
        records, eval_records = split_eval(records, cfg.eval_split, cfg.seed)

    if model is None:
        model, tokenizer = load_model(cfg.model, lora=cfg.lora, seed=cfg.seed, chat_template=cfg.chat_template)
    else:
        model, tokenizer = given_model(model, tokenizer, cfg)
    lora = cfg.lora.enabled
    if cfg.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input grads, so it works for LoRA and full fine-tuning alike.
        if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.2x; the old name is deprecated
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    pad_id = int(tokenizer.pad_token_id)
    train_data = tokenize_data(cfg, kind, records, tokenizer, "tokenising train")
    eval_data = tokenize_data(cfg, kind, eval_records, tokenizer, "tokenising eval") if eval_records else None
    say(f"train data: {len(train_data)} examples ({train_data.stats.summary()}; {train_data.skipped} skipped)")
    if eval_data is not None:
        say(f"eval data: {len(eval_data)} examples ({eval_data.stats.summary()}; {eval_data.skipped} skipped)")

    with_kl = "kl" in spec.needs_extras
    mode = resolve_mode(cfg.reference, spec.needs_reference, lora, with_kl, spec.token_level)
    device = accelerator.device
    model.to(device)
    policy = CompletionLogProbs(model)
    reference = Reference(mode)
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    offload_dir: Path | None = None
    if cfg.reference_offload and mode != "separate":
        raise ConfigError(f"reference_offload applies to reference: separate, not {mode}")
    if mode == "separate":
        ref_model = freeze(reference_policy(cfg, model)).to(device)
        if cfg.reference_offload:
            offload_dir = Path(cfg.output_dir) / f".reference-offload-{accelerator.process_index}"
            offload_to_disk(ref_model, offload_dir, device)
            say(f"reference weights offloaded to {offload_dir} (streamed in for each reference forward)")
        reference.model = CompletionLogProbs(ref_model)
    elif mode == "precompute":
        same = cfg.reference_model in (None, cfg.model)
        ref_lm = model if same else freeze(reference_policy(cfg, model)).to(device)
        runner = CompletionLogProbs(ref_lm)
        fp = model_fingerprint(ref_lm, cfg.reference_model or cfg.model)
        for split, data in (("train", train_data), ("eval", eval_data)):
            if data is None:
                continue
            key = cache_key(data, fp, cfg.template)
            with accelerator.main_process_first():  # the main process writes the cache, the others read it
                reference.tables[split] = load_or_compute(runner, data, key, pad_id, eval_bs, device, main=main,
                                                          log=say)
        del runner, ref_lm
    say(f"objective {spec.name} ({kind}), reference: {mode}")

    run_dir = Path(cfg.output_dir)
    resolved = replace(cfg, overwrite=False, reference=mode, objective_args={**{k: v for k, v in spec.defaults.items()
                                                               if _yamlable(v) and k != "state"}, **hparams})
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(resolved, run_dir / "config.yaml")
        if cfg.on_bad_record == "skip" and data_reports:
            from alignkit.data.io import write_skip_report

            write_skip_report(run_dir / "data_skipped.json", data_reports)
    accelerator.wait_for_everyone()

    splits = {"train": train_data, **({"eval": eval_data} if eval_data is not None else {})}
    step = build_step(spec, hparams, reference, device, state, cfg=cfg, tokenizer=tokenizer, pad_id=pad_id,
                      batch_size=eval_bs, accelerator=accelerator, log=say, splits=splits,
                      records={"train": records, **({"eval": eval_records} if eval_data is not None else {})})
    if with_kl and accelerator.num_processes > 1:
        step.gather = accelerator.gather
    if isinstance(state, ObjectiveState) and accelerator.num_processes > 1:  # BCO's δ over the global batch
        state.reduce = lambda t: accelerator.reduce(t, reduction="sum")
    eval_fn = make_eval_fn(step, eval_data, pad_id, eval_bs, accelerator, with_kl) if eval_data else None
    # Same initial RNG state whether or not the reference pass or eval split consumed random numbers.
    seed_everything(cfg.seed + 1)
    try:
        result = train_loop(policy, DataSource(train_data, pad_id, with_kl), step, cfg, run_dir,
                            accelerator=accelerator, eval_fn=eval_fn, objective_state=state, lora=lora, log=say,
                            on_checkpoint=on_checkpoint)
    finally:
        if offload_dir is not None:
            shutil.rmtree(offload_dir, ignore_errors=True)
    final_dir = None
    summary = {"steps": result.steps, "reference": mode, "objective": spec.name, "train_examples": len(train_data),
               "eval_examples": len(eval_data) if eval_data else 0, "skipped_steps": result.skipped_steps,
               "truncation": train_data.stats.summary(), "records_dropped_too_long": train_data.skipped,
               "last": result.last_metrics}
    if main:
        base = "" if cfg.model.startswith("<") else cfg.model
        final_dir = save_final(model, tokenizer, run_dir / "final", lora, base=base, seed=cfg.seed)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    accelerator.wait_for_everyone()
    if cfg.push_to_hub and main and final_dir is not None:
        summary["hub"] = push_final(cfg, final_dir, lora, say)
    return TrainResult(run_dir, result.steps, mode, final_dir, result, summary)


def push_final(cfg: TrainConfig, folder: Path, lora: bool, say: Any) -> str:
    """Model card into `folder`, then the upload (`alignkit.hub`); returns the commit URL."""
    from alignkit.hub import hub_repo_id, prepare_upload, push_folder

    repo_id = hub_repo_id(cfg.hub_model_id, cfg.output_dir)
    settings = {k: getattr(cfg, k) for k in ("objective", "lr", "batch_size", "grad_accum", "max_steps", "epochs",
                                             "beta", "seed")}
    prepare_upload(folder, repo_id, base_model=None if cfg.model.startswith("<") else cfg.model,
                   objective=cfg.objective, data=cfg.data, lora=lora, settings=settings)
    url = push_folder(folder, repo_id, private=cfg.hub_private_repo)
    say(f"pushed {folder} to the hub: {url}")
    return url


def given_model(model: Any, tokenizer: Any, cfg: TrainConfig) -> tuple[Any, Any]:
    """A policy passed in memory: LoRA attached when `cfg.lora` asks (a PEFT model is used as it is), the
    tokenizer finished as `load_model` finishes one (pad token, chat template; `cfg.chat_template`)."""
    from alignkit.models import attach_lora, finish_tokenizer

    if tokenizer is None:
        raise ConfigError("a model object needs its tokenizer: alignkit.train(model=..., tokenizer=...)")
    tokenizer = finish_tokenizer(tokenizer, cfg.chat_template)
    if cfg.lora.enabled and not hasattr(model, "peft_config"):
        model = attach_lora(model, cfg.lora)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def reference_policy(cfg: TrainConfig, policy: Any) -> Any:
    """The frozen reference for `separate` / a different precompute model: `cfg.reference_model`, else
    `cfg.model`, else (a policy passed in memory, `cfg.model` a label) a copy of the policy as it starts."""
    spec = cfg.reference_model or cfg.model
    if spec.startswith("<"):  # a label of an in-memory model (alignkit.api)
        import copy

        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        return copy.deepcopy(base)
    return load_model(spec, seed=cfg.seed)[0]


def _yamlable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, list, dict))


def make_eval_fn(step: ObjectiveStep, data: TokenizedData, pad_id: int, batch_size: int, accelerator: Any,
                 with_kl: bool) -> Any:
    """Example-weighted mean loss and metrics over the eval split, sharded across processes."""
    world, rank = accelerator.num_processes, accelerator.process_index

    def evaluate(model: nn.Module) -> dict[str, float]:
        sums: dict[str, float] = {}
        count = 0.0
        starts = list(range(0, len(data), batch_size))[rank::world]
        for s in starts:
            idx = list(range(s, min(s + batch_size, len(data))))
            if with_kl and len(idx) < 2:
                continue  # a KL pair needs another example in the batch
            loss, metrics, _ = step(model, collate(data, idx, pad_id, with_kl=with_kl), split="eval")
            w = float(len(idx))
            for k, v in {"loss": float(loss), **metrics}.items():
                sums[k] = sums.get(k, 0.0) + w * float(v)
            count += w
        keys = sorted(sums)
        if world > 1:
            t = torch.tensor([count] + [sums.get(k, 0.0) for k in keys], dtype=torch.float64,
                             device=accelerator.device)
            t = accelerator.reduce(t, reduction="sum")
            count, vals = float(t[0]), t[1:].tolist()
            sums = dict(zip(keys, vals, strict=True))
        return {k: v / max(count, 1.0) for k, v in sums.items()}

    return evaluate


def save_final(model: nn.Module, tokenizer: Any, out: Path, lora: bool, base: str = "", seed: int = 0) -> Path:
    """`final/`: an HF model directory, or for LoRA runs the peft adapter directory (merge with `export`) whose
    adapter_config.json names its base (`base_model_name_or_path`), so PeftModel / AutoPeftModelForCausalLM and
    `alignkit eval --model RUN/final` load it."""
    import tempfile

    from alignkit.models import mark_adapter_base

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=out.parent))
    info = mark_adapter_base(model, base, seed) if lora and base else {"lora": lora}
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "alignkit.json").write_text(json.dumps(info))
    replace_dir(tmp, out)  # final/ is never missing, even if the process dies here (issue #14)
    return out
