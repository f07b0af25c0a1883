"""Which step the engine runs: the plain `ObjectiveStep`, or one that adds what an objective beyond pairs needs.

  teacher (dckd, adpa)          → `teacher.TeacherStep`: precomputed top-k teacher tables + student gather;
  judged data (cut)             → `judged.JudgedStep`: plain and judgment contexts in one forward;
  `aligned_avg_logp` (poft)     → per-example aligned-model scores (`example_scores`);
  `udm_model` (bco)             → per-example UDM weights (`example_scores`);
  `token_weights` (ddpo)        → `dense.TokenWeightStep`: changed-token indicators from spans or a token diff;
  `shared_prompt: true`         → `prefix.SharedPromptStep`: each prompt encoded once, its KV cache reused.
`tokenize_data` is the one tokeniser entry point (judged records have their own).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from alignkit.errors import ConfigError
from alignkit.objectives.base import ObjectiveSpec
from alignkit.train.batching import TokenizedData, tokenize_records
from alignkit.train.reference import Reference
from alignkit.train.step import ObjectiveStep


def tokenize_data(cfg: Any, kind: str, records: list[Any], tokenizer: Any, desc: str) -> TokenizedData:
    kw = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length, truncation=cfg.truncation,
              template=cfg.template, desc=desc)
    if kind == "judged":
        from alignkit.train.judged import tokenize_judged

        return tokenize_judged(records, tokenizer, judgment_template=cfg.judgment_template,
                               positive_score=cfg.judged_positive_score, **kw)  # type: ignore[arg-type]
    return tokenize_records(records, kind, tokenizer, **kw)  # type: ignore[arg-type]


def build_step(spec: ObjectiveSpec, hparams: dict[str, Any], reference: Reference, device: Any,
               state: dict[str, Any] | None, *, cfg: Any, tokenizer: Any, pad_id: int, batch_size: int,
               accelerator: Any, log: Any, splits: dict[str, TokenizedData],
               records: dict[str, list[Any]]) -> ObjectiveStep:
    """The step for `spec` with everything it needs precomputed; `splits`/`records` by split name."""
    base = (spec, hparams, reference, device, state)
    if spec.needs_teacher:
        from alignkit.train.teacher import TeacherStep, build_teacher_tables

        if cfg.shared_prompt:
            raise ConfigError(f"shared_prompt does not apply to token-level objective {spec.name!r}")
        tables = build_teacher_tables(cfg, spec.name, tokenizer, splits, pad_id, batch_size, device, accelerator,
                                      log)
        return TeacherStep(*base, tables=tables)
    if spec.data_kind == "judged":
        from alignkit.train.judged import JudgedStep, judged_labels

        return JudgedStep(*base, labels={split: judged_labels(d) for split, d in splits.items()})
    if "token_weights" in spec.needs_extras:  # ddpo: changed-token indicators from spans or the token diff
        from alignkit.train.dense import TokenWeightStep, ddpo_args, indicator_tables

        if cfg.shared_prompt:
            raise ConfigError(f"shared_prompt does not apply to token-level objective {spec.name!r}")
        tables = indicator_tables(ddpo_args(spec.defaults, hparams), tokenizer, splits, records, log)
        return TokenWeightStep(*base, splits=splits, tables=tables)
    extras: dict[str, dict[str, Tensor]] = {}
    if "aligned_avg_logp" in spec.needs_extras:
        from alignkit.train.example_scores import aligned_avg_logp

        extras["aligned_avg_logp"] = aligned_avg_logp(cfg, records, splits, device, batch_size, accelerator, log)
    if cfg.udm_model:
        if spec.name != "bco":
            raise ConfigError(f"udm_model applies to the 'bco' objective, not {spec.name!r}")
        from alignkit.train.example_scores import udm_weights

        extras["udm_weight"] = udm_weights(cfg, records, splits, device, log)
    if cfg.shared_prompt:
        from alignkit.train.prefix import SharedPromptStep

        return SharedPromptStep(*base, data=splits, pad_id=pad_id, extras=extras)
    if extras:
        from alignkit.train.example_scores import ExtrasStep

        return ExtrasStep(*base, extras=extras)
    return ObjectiveStep(*base)
