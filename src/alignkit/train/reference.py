"""Reference log-probs S_ref(y) (spec/objectives.md §0: frozen, no gradient), four ways.

- `precompute`: one no-grad pass over the data before training; cached on disk as safetensors under
  `$ALIGNKIT_CACHE/reference/<key>.safetensors`, key = data fingerprint (every token id + truncation settings)
  + model fingerprint; a later run with the same data, model and tokenisation reuses it. No reference model
  stays in memory while training.
- `adapter`: LoRA runs only; the policy with its adapters disabled (`peft`'s `disable_adapter()`) *is* the base.
- `separate`: a second, frozen model (e.g. a different SFT checkpoint).
- `none`: reference-free objectives (SimPO, ORPO, SFT); chosen automatically when the objective needs none.

`auto` picks none → adapter (LoRA) → precompute, or `separate` when the objective needs reference log-probs of
pairs formed inside a batch (KTO's mismatched KL pairs), which cannot be precomputed per example.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from alignkit.errors import ConfigError
from alignkit.models import cache_dir
from alignkit.train.batching import Batch, TokenizedData, collate
from alignkit.train.logps import SeqLogProbs, as_seq_logprobs, unwrap_causal_lm


def resolve_mode(requested: str, needs_reference: bool, lora: bool, batch_pairs: bool, token_level: bool) -> str:
    """The reference mode actually used; raises for combinations that cannot work."""
    if not needs_reference:
        return "none"
    mode = requested
    if mode == "auto":
        mode = "adapter" if lora else ("separate" if batch_pairs or token_level else "precompute")
    if mode == "none":
        raise ConfigError("this objective needs reference log-probs; set reference to precompute, adapter or "
                          "separate (or use the objective's reference-free variant)")
    if mode == "adapter" and not lora:
        raise ConfigError("reference: adapter needs LoRA training (set lora.r > 0); use precompute or separate")
    if mode == "precompute" and (batch_pairs or token_level):
        raise ConfigError("reference: precompute caches one value per example, but this objective needs "
                          f"{'per-token' if token_level else 'in-batch KL-pair'} reference log-probs; "
                          "use adapter (LoRA) or separate")
    return mode


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run `model` (possibly wrapped by DDP / CompletionLogProbs) as its base, LoRA adapters off."""
    peft_model = model
    for _ in range(4):
        if hasattr(peft_model, "disable_adapter"):
            break
        peft_model = getattr(peft_model, "module", None) or getattr(peft_model, "model", None)
        if peft_model is None:
            raise ConfigError("reference: adapter needs a peft model, but the policy has no adapters")
    with peft_model.disable_adapter():
        yield


class Reference:
    """Gives S_ref for a batch (and for its KL pairs) in the chosen mode."""

    def __init__(self, mode: str, *, model: nn.Module | None = None,
                 tables: dict[str, Tensor] | None = None) -> None:
        self.mode = mode
        self.model = model  # `separate`: a CompletionLogProbs around the frozen reference
        self.tables = tables or {}  # `precompute`: split name → [N, K]

    def __call__(self, policy: nn.Module, batch: Batch, split: str = "train", token_level: bool = False
                 ) -> tuple[SeqLogProbs | None, SeqLogProbs | None]:
        """(reference of the batch's sequences, reference of its KL pairs); None where not applicable."""
        if self.mode == "none":
            return None, None
        if self.mode == "precompute":
            table = self.tables[split]
            vals = table[batch.indices]  # [B, K]
            sums = vals.reshape(-1)[batch.rows]
            return SeqLogProbs(sums, torch.zeros_like(sums)), None
        runner = self.model if self.mode == "separate" else policy
        ctx = adapters_disabled(policy) if self.mode == "adapter" else contextlib.nullcontext()
        assert runner is not None
        with torch.no_grad(), ctx:
            main = as_seq_logprobs(runner(batch.input_ids, batch.attention_mask, batch.labels, token_level))
            kl = as_seq_logprobs(runner(*batch.kl)) if batch.kl is not None else None
        return main, kl


def cache_key(data: TokenizedData, model_fp: str, template: str) -> str:
    h = hashlib.sha256(f"{data.fingerprint()}|{model_fp}|{template}|v1".encode())
    return h.hexdigest()[:32]


def reference_cache_path(key: str) -> Path:
    return cache_dir() / "reference" / f"{key}.safetensors"


@torch.no_grad()
def compute_table(runner: nn.Module, data: TokenizedData, pad_id: int, batch_size: int, device: Any,
                  desc: str = "reference log-probs", show: bool = True) -> Tensor:
    """S_ref of every sequence of `data`, `[N, K]` (0 for padding items)."""
    from tqdm.auto import tqdm

    was_training = runner.training
    runner.eval()
    out = torch.zeros(len(data), data.max_items, dtype=torch.float32)
    for start in tqdm(range(0, len(data), batch_size), desc=desc, leave=False, disable=not show):
        idx = list(range(start, min(start + batch_size, len(data))))
        b = collate(data, idx, pad_id)
        r = as_seq_logprobs(runner(b.input_ids.to(device), b.attention_mask.to(device), b.labels.to(device)))
        out[start:start + len(idx)] = b.to_slots(r.sums.float().cpu())
    runner.train(was_training)
    return out


CACHE_FORMAT = "alignkit-cache-v2"


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and raw bytes (sorted by name): the checksum a cache file
    carries in its header, so a flipped byte anywhere in the data is caught (issue #14 item 13)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # A uint8 view hashes the exact stored bytes for every dtype (bfloat16 has no numpy equivalent).
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _cache_problem(path: Path, key: str, valid: Callable[[dict[str, Tensor]], bool]
                   ) -> tuple[dict[str, Tensor] | None, str]:
    """(tensors, "") when the file at `path` is a sound cache for `key`; else (None, why not)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:  # noqa: BLE001 - any decoding failure means the file cannot be trusted
        return None, f"unreadable ({type(e).__name__}: {e})"
    if meta.get("format") != CACHE_FORMAT or "sha256" not in meta:
        return None, "has no checksum (written by an older alignkit)"
    if meta.get("key") != key:
        return None, f"was computed for key {meta.get('key')!r}, not {key!r}"
    if tensors_sha256(tensors) != meta["sha256"]:
        return None, "fails its SHA-256 checksum (corrupted)"
    try:
        ok = valid(tensors)
    except Exception:  # noqa: BLE001 - a missing tensor name is one more way to be invalid
        ok = False
    if not ok:
        return None, "has the wrong tensors or shapes for this data"
    return tensors, ""


def cached_tensors(path: Path, key: str, what: str, compute: Callable[[], dict[str, Tensor]],
                   valid: Callable[[dict[str, Tensor]], bool], *, main: bool, log: Any = print) -> dict[str, Tensor]:
    """The safetensors cache at `path` when it is sound, else `compute()`, written atomically (temp name, then
    rename) by the main process. Sound means: it decodes, its header names the `key` it was computed for and a
    SHA-256 of its tensors that matches (`tensors_sha256`), and it passes `valid` (shapes). Anything else is
    recomputed with a warning, never trusted: a cache that silently feeds wrong reference or teacher log-probs
    into the loss would go unnoticed (issue #14 item 13)."""
    if path.exists():
        tensors, problem = _cache_problem(path, key, valid)
        if tensors is not None:
            if main:
                log(f"{what}: reusing cache {path} (key and SHA-256 verified)")
            return tensors
        log(f"warning: {what} cache {path} {problem}; recomputing")
    tensors = {k: v.contiguous() for k, v in compute().items()}
    if main:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(tensors, str(tmp), metadata={"format": CACHE_FORMAT, "key": key, "sha256": tensors_sha256(tensors)})
        tmp.replace(path)
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
        log(f"{what}: computed {shapes} and cached at {path}")
    return tensors


def load_or_compute(runner: nn.Module, data: TokenizedData, key: str, pad_id: int, batch_size: int, device: Any,
                    *, main: bool, log: Any = print) -> Tensor:
    """The cached reference table `[N, K]` for `key`, computed when absent."""
    return cached_tensors(
        reference_cache_path(key), key, "reference log-probs",
        lambda: {"reference": compute_table(runner, data, pad_id, batch_size, device, show=main)},
        lambda t: tuple(t["reference"].shape) == (len(data), data.max_items), main=main, log=log)["reference"]


def offload_to_disk(model: nn.Module, folder: Path, device: Any) -> nn.Module:
    """Move a frozen model's weights to `folder` with accelerate's `disk_offload`: each module's weights are read
    back (memory-mapped) just before its forward and dropped after it, so the model costs RAM for one module at a
    time. Outputs are bit-identical; the price is re-reading the weights on every forward."""
    from accelerate import disk_offload

    shutil.rmtree(folder, ignore_errors=True)  # a stale index.json from another model would be reused silently
    folder.mkdir(parents=True)
    disk_offload(model, str(folder), execution_device=torch.device(device))
    return model


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def has_adapters(model: nn.Module) -> bool:
    return unwrap_causal_lm(model) is not model and hasattr(model, "disable_adapter")
