"""Task vectors and the merged parameters θ(λ) = θ_0 + Σ_k λ_k τ_k (spec wave2_selfalign_merge.md §5).

Anchors: a task vector is `θ_k − θ_anchor(k)`. With `anchor="base"` every vector starts at θ_0 (classic task
arithmetic); with `anchor="chain"` each starts at the previous checkpoint, so for (SFT, DPO) τ_SFT = θ_SFT − θ_0
and τ_DPO = θ_DPO − θ_SFT (the preference delta, the spec's adaptation to aligned checkpoints [design]). Then
λ = (1, 1) is exactly θ_DPO, (1, 0) θ_SFT and (0, 0) θ_0.

Only floating-point tensors are merged; integer buffers are copied from the base. Arithmetic is in float32 (or the
base's dtype if wider) so λ = (1, 1) reproduces the last checkpoint to rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from alignkit.errors import ConfigError, ModelError

Anchor = Literal["base", "chain"]
State = dict[str, Tensor]


def state_of(model: torch.nn.Module) -> State:
    """A detached copy of the model's parameters and buffers by name (tied weights appear under each name)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _work_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def check_compatible(base: Mapping[str, Tensor], other: Mapping[str, Tensor], name: str) -> None:
    """Same tensor names and shapes, or a clear error naming the first difference."""
    missing = sorted(set(base) - set(other))
    extra = sorted(set(other) - set(base))
    if missing or extra:
        raise ModelError(f"checkpoint {name} does not share the base's architecture: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}; all checkpoints must be fine-tunes of one base model")
    for k, v in base.items():
        if tuple(other[k].shape) != tuple(v.shape):
            raise ModelError(f"checkpoint {name}: tensor {k} has shape {tuple(other[k].shape)}, the base has "
                             f"{tuple(v.shape)} (was the vocabulary resized?)")


def mergeable(t: Tensor) -> bool:
    return t.is_floating_point()


@dataclass
class TaskVectors:
    """Base parameters θ_0 and K task vectors τ_k over the mergeable tensors, in a common work dtype."""

    base: State
    vectors: list[State]
    names: list[str]
    anchors: list[str]

    @property
    def keys(self) -> list[str]:
        return [k for k, v in self.base.items() if mergeable(v)]

    def combine(self, lambdas: Sequence[float] | Tensor) -> State:
        """θ(λ) for a plain list of K numbers (no graph); integer buffers come from the base."""
        lam = [float(x) for x in lambdas]
        if len(lam) != len(self.vectors):
            raise ConfigError(f"{len(lam)} coefficients for {len(self.vectors)} task vectors")
        out: State = {}
        for k, b in self.base.items():
            if not mergeable(b):
                out[k] = b.clone()
                continue
            acc = b.to(_work_dtype(b)).clone()
            for w, tv in zip(lam, self.vectors, strict=True):
                if w != 0.0:
                    acc.add_(tv[k], alpha=w)
            out[k] = acc.to(b.dtype)
        return out


def task_vectors(base: Mapping[str, Tensor], checkpoints: Sequence[Mapping[str, Tensor]],
                 names: Sequence[str] | None = None, anchor: Anchor = "chain") -> TaskVectors:
    """τ_k = θ_k − θ_anchor(k): the base for `anchor="base"`, the previous checkpoint for `"chain"`."""
    if anchor not in ("base", "chain"):
        raise ConfigError(f"anchor must be 'base' or 'chain', got {anchor!r}")
    if not checkpoints:
        raise ConfigError("merging needs at least one fine-tuned checkpoint")
    names = list(names or [f"model{i + 1}" for i in range(len(checkpoints))])
    work = {k: v.to(_work_dtype(v)) for k, v in base.items() if mergeable(v)}
    vectors: list[State] = []
    anchors: list[str] = []
    prev, prev_name = work, "base"
    for name, ck in zip(names, checkpoints, strict=True):
        check_compatible(base, ck, name)
        cur = {k: ck[k].to(_work_dtype(ck[k])) for k in work}
        ref, ref_name = (work, "base") if anchor == "base" else (prev, prev_name)
        vectors.append({k: cur[k] - ref[k] for k in work})
        anchors.append(ref_name)
        prev, prev_name = cur, name
    return TaskVectors(base={k: v.clone() for k, v in base.items()}, vectors=vectors, names=names,
                       anchors=anchors)


def load_state(spec: str) -> tuple[Any, Any, State]:
    """(model, tokenizer, state) of a model spec (a local HF directory, a LoRA adapter directory, `tiny-random`):
    a LoRA adapter is merged into its base first, so its task vector is (α/r)·B·A on its target modules."""
    from alignkit.models import load_model

    model, tokenizer = load_model(spec)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model, tokenizer, state_of(model)


def load_task_vectors(base: str, checkpoints: Sequence[str], anchor: Anchor = "chain"
                      ) -> tuple[Any, Any, TaskVectors]:
    """Load the base and each checkpoint (one at a time, so at most two full copies plus the vectors in memory)."""
    model, tokenizer, base_state = load_state(base)
    states = []
    for spec in checkpoints:
        _, _, st = load_state(spec)
        states.append(st)
    names = [Path(c).name or c for c in checkpoints]
    if len(set(names)) < len(names):  # runs/sft/final and runs/dpo/final: the last part alone is ambiguous
        names = list(checkpoints)
    return model, tokenizer, task_vectors(base_state, states, names, anchor)


def save_merged(model: Any, tokenizer: Any, state: Mapping[str, Tensor], out: str | Path, *,
                overwrite: bool = False) -> Path:
    """Load `state` into `model` and write a plain HF directory (safetensors + tokenizer) at `out`, atomically.
    An existing non-empty `out` is replaced only with `overwrite` (never silently)."""
    from alignkit.models import merge_and_save

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace it")
    model.load_state_dict(dict(state), strict=True)
    return merge_and_save(model, tokenizer, out)
