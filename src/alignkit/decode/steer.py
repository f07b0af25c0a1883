"""Representation steering: RepE / CAA / ActAdd-style vectors added to the residual stream (spec A6).

* Extraction (`extract_steering_vector`) from contrastive prompt pairs (positive, negative), reading the output of
  decoder block ℓ (ℓ indexes `model.model.layers`, negative indices allowed) at the last token (RepE
  `rep_token = −1`). It is read by a forward hook on the block, i.e. exactly where the injection adds: not from
  `hidden_states[ℓ + 1]`, because transformers applies the final norm to the last entry (`hidden_states[-1]` is
  post-norm), so a last-layer vector read there would live in another space than the one it is added to
  (issue #13.5). For ℓ < last the two readings are identical.
  - `method="mean_diff"` (CAA / RepE ClusterMean): v_ℓ = mean_i (h⁺_i − h⁻_i);
  - `method="pca"` (RepE PCARepReader): d_i = h(a_i) − h(b_i), centred; v_ℓ = first principal component; sign
    from labels: +1 if the positive member projects higher than the negative one in at least half the pairs.
  Pairs may be given in random order with `labels[i] = True` when the first member is the positive one.
  Every v_ℓ is unit-normalised, so α is the norm of the added vector per layer (trade-offs repo, WrapModel.py).
* Injection (`steering` context manager / `SteeredSampler`): a forward hook on each chosen block adds α·v_ℓ to its
  hidden-state output at every position (prompt and generated tokens, as RepE `WrappedBlock` linear_comb).
  Left-padding positions get the vector too; they are masked out of attention, so real tokens are unaffected.
  Hooks are removed on exit. v is cast to the block output's dtype/device.
* Vectors save/load as safetensors (`layer.{ℓ}` tensors, method and model in the metadata).
Compute: extraction = 2·n_pairs forwards once; inference = one add per steered layer per token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from alignkit.data.records import Prompt
from alignkit.decode.hf import left_pad
from alignkit.decode.sampler import Compute, Prefix, Sample
from alignkit.errors import ConfigError, DataError


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The list of decoder blocks (Llama/Mistral/Qwen `model.layers`, GPT-2 `transformer.h`, peft-wrapped too)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks") and len(module):
            return module
    raise ConfigError(f"cannot find the decoder blocks of {type(model).__name__} (looked for a ModuleList named "
                      "layers, h or blocks)")


def _norm_layer(model: Any, layer: int) -> int:
    n = len(decoder_layers(model))
    if not -n <= layer < n:
        raise ConfigError(f"layer {layer} out of range for a model with {n} decoder blocks")
    return layer % n


@dataclass
class SteeringVector:
    vectors: dict[int, torch.Tensor]  # decoder-block index -> unit vector [hidden]
    method: str = "mean_diff"
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"layer.{k}": v.detach().float().contiguous().cpu() for k, v in self.vectors.items()}
        save_file(tensors, str(path), metadata={"method": self.method, **self.metadata})
        return path

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise DataError(f"steering vector file {path} does not exist")
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        try:
            vectors = {int(k.split(".", 1)[1]): v for k, v in tensors.items()}
        except (IndexError, ValueError) as e:
            raise DataError(f"{path}: tensors must be named layer.<index>, got {sorted(tensors)}") from e
        return cls(vectors, meta.pop("method", "mean_diff"), meta)


def _block_hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.inference_mode()
def last_token_states(model: Any, tokenizer: Any, texts: Sequence[str], layers: Sequence[int],
                      batch_size: int = 16) -> dict[int, torch.Tensor]:
    """Hidden state at the last token of each text, at the output of each decoder block in `layers` (read by a
    hook on the block, the point `steering` adds to; with steering on, the steered states)."""
    device = next(model.parameters()).device
    blocks = decoder_layers(model)
    lays = [_norm_layer(model, ly) for ly in layers]
    out: dict[int, list[torch.Tensor]] = {ly: [] for ly in layers}
    seen: dict[int, torch.Tensor] = {}

    def make_reader(ly: int):  # noqa: ANN202
        def read(module: Any, args: Any, output: Any) -> None:
            seen[ly] = _block_hidden(output)[:, -1].float().cpu()
        return read

    handles = [blocks[ly].register_forward_hook(make_reader(ly)) for ly in set(lays)]
    try:
        for start in range(0, len(texts), batch_size):
            chunk = [tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts[start:start + batch_size]]
            ids, mask = left_pad(chunk, tokenizer.pad_token_id)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            seen.clear()
            model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                  use_cache=False)
            for ly, norm in zip(layers, lays, strict=True):
                out[ly].append(seen[norm])
    finally:
        for h in handles:
            h.remove()
    return {ly: torch.cat(v) for ly, v in out.items()}


def extract_steering_vector(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], layers: Sequence[int],
                            method: str = "mean_diff", labels: Sequence[bool] | None = None,
                            template: str = "{}") -> SteeringVector:
    """A unit steering vector per layer from (positive, negative) text pairs (see module docstring).
    `template` formats each text (e.g. "Request: Can you {}? Answer:" as the trade-offs code)."""
    if not pairs:
        raise DataError("steering extraction needs at least one contrastive pair")
    if method not in ("mean_diff", "pca"):
        raise ConfigError(f"unknown steering method {method!r}; choose mean_diff or pca")
    if labels is not None and len(labels) != len(pairs):
        raise DataError(f"{len(labels)} labels for {len(pairs)} pairs")
    if method == "pca" and len(pairs) < 2:
        raise DataError("PCA steering needs at least two pairs")
    lays = [_norm_layer(model, ly) for ly in layers]
    firsts = [template.format(a) for a, _ in pairs]
    seconds = [template.format(b) for _, b in pairs]
    h1 = last_token_states(model, tokenizer, firsts, lays)
    h2 = last_token_states(model, tokenizer, seconds, lays)
    first_pos = torch.tensor([True] * len(pairs) if labels is None else [bool(x) for x in labels])
    vectors = {}
    for ly in lays:
        pos = torch.where(first_pos[:, None], h1[ly], h2[ly])
        neg = torch.where(first_pos[:, None], h2[ly], h1[ly])
        if method == "mean_diff":
            v = (pos - neg).mean(0)
        else:
            d = h1[ly] - h2[ly]  # stored order, as RepE
            centred = d - d.mean(0)
            v = torch.linalg.svd(centred, full_matrices=False).Vh[0]
            v = v / v.norm()
            # label-based sign: the positive member should project higher (ties -> +1)
            higher = ((pos - neg) @ v > 0).float().mean().item()
            v = v if higher >= 0.5 else -v
        norm = v.norm()
        if norm == 0:
            raise DataError(f"layer {ly}: positive and negative prompts give identical states; no direction")
        vectors[ly] = v / norm
    meta = {"model": type(model).__name__, "pairs": str(len(pairs)), "template": template}
    return SteeringVector(vectors, method, meta)


@contextlib.contextmanager
def steering(model: Any, vector: SteeringVector, alpha: float, layers: Sequence[int] | None = None
             ) -> Iterator[None]:
    """Add α·v_ℓ to the output of each decoder block ℓ in `layers` (default: all layers of the vector)."""
    blocks = decoder_layers(model)
    chosen = [_norm_layer(model, ly) for ly in (layers if layers is not None else vector.layers)]
    missing = [ly for ly in chosen if ly not in vector.vectors]
    if missing:
        raise ConfigError(f"the steering vector has no direction for layers {missing}; it has {vector.layers}")
    handles = []

    def make_hook(v: torch.Tensor):  # noqa: ANN202
        def hook(module: Any, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                h = output[0]
                return (h + alpha * v.to(h.dtype).to(h.device),) + tuple(output[1:])
            return output + alpha * v.to(output.dtype).to(output.device)
        return hook

    try:
        for ly in chosen:
            # prepend: run before transformers' own output-recording hooks so recorded hidden states are steered
            handles.append(blocks[ly].register_forward_hook(make_hook(vector.vectors[ly]), prepend=True))
        yield
    finally:
        for h in handles:
            h.remove()


class SteeredSampler:
    """Wrap an HFSampler so every call runs with the steering hooks on (same compute counter)."""

    def __init__(self, inner: Any, vector: SteeringVector, alpha: float, layers: Sequence[int] | None = None) -> None:
        self.inner, self.vector, self.alpha, self.layers = inner, vector, alpha, layers

    @property
    def compute(self) -> Compute:
        return self.inner.compute

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _ctx(self) -> contextlib.AbstractContextManager:
        return steering(self.inner.model, self.vector, self.alpha, self.layers)

    def sample(self, prompts: Sequence[Prompt], *args: Any, **kwargs: Any) -> list[list[Sample]]:
        with self._ctx():
            return self.inner.sample(prompts, *args, **kwargs)

    def extend(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], *args: Any, **kwargs: Any
               ) -> list[Sample]:
        with self._ctx():
            return self.inner.extend(prompts, prefixes, *args, **kwargs)

    def score_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[Prefix]) -> list[list[float]]:
        with self._ctx():
            return self.inner.score_logprobs(prompts, completions)

    def next_token_topk(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], k: int) -> list:
        with self._ctx():
            return self.inner.next_token_topk(prompts, prefixes, k)
