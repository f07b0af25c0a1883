"""Alignment recovery after fine-tuning by sparse weight restoration with rollback (wave2_feedback_safety.md §6;
Yang, Tao, Chen, Xu, IEEE S&P 2025, arXiv 2504.09757; code kangyangWHU/LLMAlignment).

`restore_alignment(aligned, finetuned, tokenizer, harmful_prompts, task_metric, task_prompts, cfg)`:

1. v_h = mean h_{θ_A}(x) over harmful prompts, v_t = mean h_{θ_F}(x) over task prompts (block L_end output, last
   prompt token; `restore_ops`).
2. Recovery step: loss −cos(mean_B h_θ, v_h) per batch, backward (gradients accumulate over steps unless
   `accumulate_grads=False`, as in the code); copy from θ_A the weights whose sign agrees and whose |g| beats the
   k-th largest, k = ⌈n_param·restore_rate⌉.
3. Rollback step (rollback mode only, right after each recovery step): zero grads, loss −cos(mean_B h_θ, v_t) on
   task prompts, copy back from θ_F the top ⌈|M'|·rollback_rate⌉ of the weights restored in this step.
4. Schedule (§6.5): `warmup_steps` recovery steps; if the task score s < s_F·(1 − metric_drop), restart from θ_F
   and run `total_steps` with rollback, else continue to `total_steps` without; save every `save_every` steps;
   return the saved step before the first whose score ≤ s_F·(1 − metric_drop) (the last one if none drops).

Every weight is always either its θ_F or its θ_A value, so a saved step is one boolean mask per tensor (cheap)
and the returned model is rebuilt exactly from it. Only the eligible tensors (blocks < L_end, no norms, no
embeddings) ever change. [uncertain] choices exposed as parameters: `layer_end` (default ⌊2n/3⌋),
`restore_rate` (0.002 as in `run_recover_exp.py`; `__main__` uses 0.001), `strict_threshold`,
`accumulate_grads`, and zeroing gradients after a rollback (the code's rollback zeroes them first; this
implementation also zeroes them after, so the task gradient never leaks into the next recovery selection).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import Prompt
from alignkit.errors import ConfigError
from alignkit.safety.restore_ops import (
    DEFAULT_EXCLUDE,
    batched,
    budget,
    decoder_blocks,
    decoder_param_count,
    default_layer_end,
    direction,
    eligible_parameters,
    encode_prompts,
    neg_cosine,
    select_restore_mask,
    truncated_hidden,
)


@dataclass
class RestoreConfig:
    """Settings of `restore_alignment` (defaults: the code's, §6.2–§6.5)."""

    layer_end: int | None = None  # None: ⌊2n/3⌋ of the model's n decoder blocks [uncertain]
    restore_rate: float = 0.002  # ρ_rec [uncertain: 0.001 in __main__, 0.002 in run_recover_exp.py]
    rollback_rate: float = 0.2
    metric_drop: float = 0.05
    warmup_steps: int = 5
    total_steps: int = 20
    save_every: int = 5
    batch_size: int = 8
    rollback: str = "auto"  # auto (the paper's rule) | never | always
    accumulate_grads: bool = True
    strict_threshold: bool = True
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    template: str = "auto"  # chat template for prompts ("auto": the tokenizer's, if it has one)
    track_cosine: bool = True  # cos(mean h_θ, v_h) on all harmful prompts after every step (one extra pass)

    def validate(self) -> None:
        if self.rollback not in ("auto", "never", "always"):
            raise ConfigError(f"rollback must be auto, never or always; got {self.rollback!r}")
        if self.total_steps < 1 or self.save_every < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ConfigError("need total_steps >= 1, save_every >= 1 and 0 <= warmup_steps <= total_steps")
        if self.warmup_steps and self.warmup_steps % self.save_every:
            raise ConfigError(f"warmup_steps ({self.warmup_steps}) must be a multiple of save_every "
                              f"({self.save_every}): the warm-up ends at a saved step")
        for name in ("restore_rate", "rollback_rate", "metric_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]; got {getattr(self, name)}")


@dataclass
class RestoreResult:
    """What `restore_alignment` did. `model` holds the chosen step's weights (the fine-tuned model, edited in
    place)."""

    model: Any
    chosen_step: int
    mode: str  # "recovery" or "rollback"
    score_finetuned: float
    threshold: float
    scores: dict[int, float]  # saved step → task score (0 = θ_F)
    restored: dict[int, int]  # saved step → number of weights equal to their θ_A source
    cosine: list[float]  # cos(mean h_θ, v_h) before step 1 and after each step (track_cosine)
    layer_end: int
    k: int
    n_param: int
    eligible: int
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("model")
        d["scores"] = {str(k): v for k, v in self.scores.items()}
        d["restored"] = {str(k): v for k, v in self.restored.items()}
        return d


TaskMetric = Callable[[Any], float]


def _state(params: dict[str, torch.nn.Parameter], theta_a: dict[str, Tensor], theta_f: dict[str, Tensor],
           from_a: dict[str, Tensor]) -> None:
    """Write θ = where(from_a, θ_A, θ_F) into the parameters."""
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(torch.where(from_a[n], theta_a[n], theta_f[n]))


def restore_alignment(aligned: Any, finetuned: Any, tokenizer: Any, harmful_prompts: Sequence[Prompt],
                      task_metric: TaskMetric, task_prompts: Sequence[Prompt] = (),
                      cfg: RestoreConfig | None = None, log: Callable[[str], None] | None = None) -> RestoreResult:
    """Restore alignment-critical weights of `finetuned` from `aligned` (module docstring). `finetuned` is edited
    in place and returned in the result; `aligned` is only read. A LoRA-wrapped `finetuned` must be merged first
    (`merge_and_unload`). `task_metric(model) -> float` (higher is better) decides rollback and the final step;
    `task_prompts` give the task direction (needed unless rollback="never")."""
    cfg = cfg or RestoreConfig()
    cfg.validate()
    say = log or (lambda _m: None)
    messages: list[str] = []

    def note(msg: str) -> None:
        messages.append(msg)
        say(msg)

    if hasattr(finetuned, "merge_and_unload") or hasattr(aligned, "merge_and_unload"):
        raise ConfigError("merge LoRA adapters first (model.merge_and_unload()): restoration works on plain weights")
    if not harmful_prompts:
        raise ConfigError("restore_alignment needs harmful prompts (the harmful direction is their mean)")
    if cfg.rollback != "never" and not task_prompts:
        raise ConfigError("rollback needs task prompts (the task direction); pass them or set rollback='never'")
    n_layers = len(decoder_blocks(finetuned)[1])
    layer_end = cfg.layer_end if cfg.layer_end is not None else default_layer_end(n_layers)
    params = eligible_parameters(finetuned, layer_end, cfg.exclude)
    aligned_params = dict(aligned.named_parameters())
    missing = [n for n in params if n not in aligned_params or aligned_params[n].shape != params[n].shape]
    if missing:
        raise ConfigError(f"aligned and fine-tuned models differ in architecture (e.g. {missing[0]}); both must "
                          "share architecture and tokenizer")
    pad_id = int(tokenizer.pad_token_id)
    harm_batches = batched(encode_prompts(tokenizer, harmful_prompts, cfg.template), cfg.batch_size)
    task_batches = batched(encode_prompts(tokenizer, task_prompts, cfg.template), cfg.batch_size) \
        if task_prompts else []

    aligned.eval()
    finetuned.eval()
    v_h = direction(aligned, harm_batches, layer_end, pad_id)
    v_t = direction(finetuned, task_batches, layer_end, pad_id) if task_batches else None
    device = next(finetuned.parameters()).device
    theta_a = {n: aligned_params[n].detach().to(device).clone() for n in params}
    theta_f = {n: p.detach().clone() for n, p in params.items()}
    n_param = decoder_param_count(finetuned)
    k = budget(n_param, cfg.restore_rate)
    note(f"layer_end {layer_end}/{n_layers}, n_param {n_param}, k {k} weights per step, "
         f"{sum(p.numel() for p in params.values())} eligible")

    flags = {n: p.requires_grad for n, p in finetuned.named_parameters()}
    for p in finetuned.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    s_f = float(task_metric(finetuned))
    threshold = s_f * (1.0 - cfg.metric_drop)
    note(f"task score of the fine-tuned model {s_f:.6f}; rollback / stop threshold {threshold:.6f}")

    def zero_grads() -> None:
        for p in params.values():
            p.grad = None

    def cosine_now() -> float:
        with torch.no_grad():
            return -float(neg_cosine(direction(finetuned, harm_batches, layer_end, pad_id), v_h))

    def recovery_step(from_a: dict[str, Tensor]) -> dict[str, Tensor]:
        if not cfg.accumulate_grads:
            zero_grads()
        for batch in harm_batches:
            neg_cosine(truncated_hidden(finetuned, batch, layer_end, pad_id).mean(0), v_h).backward()
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
        masks = select_restore_mask({n: p.detach() for n, p in params.items()}, theta_a, grads, k,
                                    strict=cfg.strict_threshold)
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(torch.where(masks[n], theta_a[n], p))
                from_a[n] |= masks[n]
        return masks

    def rollback_step(restored_now: dict[str, Tensor], from_a: dict[str, Tensor]) -> int:
        assert v_t is not None
        zero_grads()
        for batch in task_batches:
            neg_cosine(truncated_hidden(finetuned, batch, layer_end, pad_id).mean(0), v_t).backward()
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
        current = {n: p.detach() for n, p in params.items()}
        candidates = select_restore_mask(current, theta_f, grads, 10**18, within=restored_now)  # M'_sel
        k_back = budget(sum(int(m.sum()) for m in candidates.values()), cfg.rollback_rate)
        masks = select_restore_mask(current, theta_f, grads, k_back, strict=cfg.strict_threshold,
                                    within=restored_now)
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(torch.where(masks[n], theta_f[n], p))
                from_a[n] &= ~masks[n]
        zero_grads()
        return sum(int(m.sum()) for m in masks.values())

    def run(steps: range, with_rollback: bool, from_a: dict[str, Tensor], saved: dict[int, dict[str, Tensor]],
            cosine: list[float]) -> None:
        for step in steps:
            masks = recovery_step(from_a)
            restored_now = sum(int(m.sum()) for m in masks.values())
            back = rollback_step(masks, from_a) if with_rollback else 0
            if cfg.track_cosine:
                cosine.append(cosine_now())
            note(f"step {step}: restored {restored_now}" + (f", rolled back {back}" if with_rollback else "")
                 + (f", harmful-direction cosine {cosine[-1]:.6f}" if cfg.track_cosine else ""))
            if step % cfg.save_every == 0:
                saved[step] = {n: m.clone() for n, m in from_a.items()}

    def count(m: dict[str, Tensor]) -> int:
        return sum(int(x.sum()) for x in m.values())

    try:
        zero_grads()
        from_a = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
        saved: dict[int, dict[str, Tensor]] = {0: {n: m.clone() for n, m in from_a.items()}}
        cosine = [cosine_now()] if cfg.track_cosine else []
        scores: dict[int, float] = {0: s_f}
        mode = "recovery"
        with_rollback = cfg.rollback == "always"
        first = range(1, (cfg.warmup_steps if cfg.rollback == "auto" else cfg.total_steps) + 1)
        run(first, with_rollback, from_a, saved, cosine)
        if with_rollback:
            mode = "rollback"
        if cfg.rollback == "auto" and cfg.warmup_steps:
            scores[cfg.warmup_steps] = float(task_metric(finetuned))
            if scores[cfg.warmup_steps] < threshold:
                note(f"task score {scores[cfg.warmup_steps]:.6f} < {threshold:.6f} after the warm-up: restarting "
                     f"from the fine-tuned weights with rollback")
                mode, with_rollback = "rollback", True
                from_a = {n: torch.zeros_like(m) for n, m in from_a.items()}
                _state(params, theta_a, theta_f, from_a)
                zero_grads()
                saved = {0: saved[0]}
                scores = {0: s_f}
                cosine = cosine[:1]
                run(range(1, cfg.total_steps + 1), True, from_a, saved, cosine)
            else:
                run(range(cfg.warmup_steps + 1, cfg.total_steps + 1), False, from_a, saved, cosine)
        elif cfg.rollback == "auto":
            run(range(1, cfg.total_steps + 1), False, from_a, saved, cosine)
        chosen = max(saved)
        steps = sorted(saved)
        for prev, step in zip(steps, steps[1:], strict=False):
            if step not in scores:
                _state(params, theta_a, theta_f, saved[step])
                scores[step] = float(task_metric(finetuned))
            if scores[step] <= threshold:
                chosen = prev
                note(f"task score {scores[step]:.6f} <= {threshold:.6f} at step {step}: keeping step {prev}")
                break
        _state(params, theta_a, theta_f, saved[chosen])
    finally:
        zero_grads()
        for n, p in finetuned.named_parameters():
            p.requires_grad_(flags[n])
    note(f"chosen step {chosen} ({mode} mode): {count(saved[chosen])} weights restored from the aligned model")
    return RestoreResult(finetuned, chosen, mode, s_f, threshold, scores, {s: count(m) for s, m in saved.items()},
                         cosine, layer_end, k, n_param, sum(p.numel() for p in params.values()), messages)


def token_likelihood(tokenizer: Any, records: Sequence[Any], template: str = "auto", batch_rows: int = 16
                     ) -> TaskMetric:
    """A task metric from reference completions: exp(mean per-token log p(completion | prompt)) over all
    completion tokens (the inverse perplexity, in (0, 1], higher is better). `records` need `prompt` and
    `completion` attributes (SFT records)."""
    if not records:
        raise ConfigError("token_likelihood needs at least one task record with a completion")

    def metric(model: Any) -> float:
        from alignkit.decode.hf import HFSampler

        sampler = HFSampler(model, tokenizer, raw=template == "never", max_batch_rows=batch_rows)
        with torch.no_grad():
            lps = sampler.score_logprobs([r.prompt for r in records], [r.completion for r in records])
        flat = [x for row in lps for x in row]
        return math.exp(sum(flat) / max(1, len(flat)))

    return metric
