"""The building blocks of sparse alignment restoration (wave2_feedback_safety.md §6.2–§6.4; Yang, Tao, Chen, Xu,
"Alleviating the Fear of Losing Alignment", IEEE S&P 2025, code kangyangWHU/LLMAlignment
`sgdg_rollback_final.py::AlignParamRollback`).

* `truncated_hidden`: h_M(x), the output of decoder block L_end (1-based: the model cut to its first L_end
  blocks, no final norm) at the last prompt position (left padding); the forward stops there.
* `direction`: v = mean_x h_M(x) (harmful direction on θ_A, task direction on θ_F).
* `neg_cosine`: the step loss −cos(u, v).
* `select_restore_mask`: the sign-agreement selection with a global top-k threshold over several tensors.
* `eligible_parameters`: the tensors the method may touch (decoder blocks < L_end, no norms, no embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import Prompt
from alignkit.errors import ConfigError

# Parameter names containing any of these are never restored (the code excludes "layernorm"; "norm" also covers
# RMSNorm spellings such as q_norm/k_norm and is the same set on Llama-style models).
DEFAULT_EXCLUDE: tuple[str, ...] = ("norm",)


class _Stop(Exception):
    """Raised by the capture hook: nothing after block L_end is needed."""


def default_layer_end(n_layers: int) -> int:
    """⌊2n/3⌋ (at least 1): the code's `layer_end_mapping` (21/32, 26/40, 12/18, 18/28) is exactly this rule.
    The scripts also sweep ⌊2n/6⌋ and ⌊4n/6⌋ [uncertain which the paper's tables use], so it is a parameter."""
    return max(1, (2 * n_layers) // 3)


def decoder_blocks(model: Any) -> tuple[str, torch.nn.ModuleList]:
    """(qualified name, ModuleList) of the decoder blocks (Llama `model.layers`, GPT-2 `transformer.h`)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks") and len(module):
            return name, module
    raise ConfigError(f"cannot find the decoder blocks of {type(model).__name__} (a ModuleList named layers, h or "
                      "blocks)")


def check_layer_end(model: Any, layer_end: int) -> int:
    n = len(decoder_blocks(model)[1])
    if not 1 <= layer_end <= n:
        raise ConfigError(f"layer_end must be in [1, {n}] for this model (it has {n} decoder blocks); got {layer_end}")
    return layer_end


def eligible_parameters(model: Any, layer_end: int, exclude: Sequence[str] = DEFAULT_EXCLUDE
                        ) -> dict[str, torch.nn.Parameter]:
    """name → parameter for every tensor inside decoder blocks 0 … layer_end−1 whose name has none of `exclude`."""
    prefix, blocks = decoder_blocks(model)
    check_layer_end(model, layer_end)
    out: dict[str, torch.nn.Parameter] = {}
    for i in range(layer_end):
        for sub, p in blocks[i].named_parameters():
            name = f"{prefix}.{i}.{sub}"
            if not any(e in name for e in exclude):
                out[name] = p
    if not out:
        raise ConfigError(f"no eligible parameters in the first {layer_end} decoder blocks (exclude={list(exclude)})")
    return out


def decoder_param_count(model: Any) -> int:
    """n_param: parameters of all decoder blocks of the full model (the budget denominator, §6.2)."""
    return sum(p.numel() for p in decoder_blocks(model)[1].parameters())


def _left_pad(seqs: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The sampler's left padding (`alignkit.decode.hf.left_pad`) plus position ids that follow the mask."""
    from alignkit.decode.hf import left_pad

    ids, mask = left_pad(seqs, pad_id)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt], template: str = "auto") -> list[list[int]]:
    from alignkit.data.tokenize import encode_prompt

    out = [list(encode_prompt(tokenizer, p, template)) for p in prompts]  # type: ignore[arg-type]
    if any(not ids for ids in out):
        raise ConfigError("a prompt encodes to zero tokens")
    return out


def truncated_hidden(model: Any, batch: list[list[int]], layer_end: int, pad_id: int) -> Tensor:
    """`[B, hidden]`: output of decoder block `layer_end` (1-based) at each row's last prompt token. Gradients flow
    to the parameters of blocks < layer_end when they require grad; later blocks never run."""
    _, blocks = decoder_blocks(model)
    check_layer_end(model, layer_end)
    device = next(model.parameters()).device
    ids, mask, positions = _left_pad(batch, pad_id, device)
    captured: dict[str, Tensor] = {}

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    handle = blocks[layer_end - 1].register_forward_hook(hook)
    try:
        model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "h" not in captured:
        raise ConfigError(f"decoder block {layer_end} did not run in the forward pass")
    return captured["h"][:, -1].float()


@torch.no_grad()
def direction(model: Any, batches: Sequence[list[list[int]]], layer_end: int, pad_id: int) -> Tensor:
    """v = mean over all prompts of h_M(x) (§6.2), `[hidden]`."""
    total, count = None, 0
    for batch in batches:
        h = truncated_hidden(model, batch, layer_end, pad_id)
        total = h.sum(0) if total is None else total + h.sum(0)
        count += h.shape[0]
    if total is None:
        raise ConfigError("direction needs at least one prompt")
    return total / count


def neg_cosine(u: Tensor, v: Tensor) -> Tensor:
    """−cos(u, v): the recovery loss (u = batch-mean hidden state, v = the target direction)."""
    return -torch.nn.functional.cosine_similarity(u.flatten(), v.flatten().to(u), dim=0)


def batched(items: Sequence[Any], size: int) -> list[list[Any]]:
    if size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {size}")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def select_restore_mask(theta: Mapping[str, Tensor] | Sequence[Tensor], theta_target: Mapping[str, Tensor] |
                        Sequence[Tensor], grad: Mapping[str, Tensor] | Sequence[Tensor], k: int, *,
                        strict: bool = True, within: Mapping[str, Tensor] | Sequence[Tensor] | None = None
                        ) -> dict[Any, Tensor]:
    """Masks of the weights to copy from `theta_target` (§6.3 steps 2–4, §6.4 steps 2–3).

    Selected: (θ − θ_target) > 0 ∧ g > 0, or (θ − θ_target) < 0 ∧ g < 0 (a descent step would move the weight
    toward its target), optionally only where `within` is True. τ = the k-th largest |g| over the selected weights
    of *all* tensors together; the mask keeps selected weights with |g| > τ (`strict=True`, the code's rule: at
    most k−1 weights, none on a tie) or |g| ≥ τ (`strict=False`). When k is at least the number of selected
    weights, every selected weight is kept. Keys (names or positions) follow the inputs.
    """
    def items(x: Any) -> list[tuple[Any, Tensor]]:
        return list(x.items()) if isinstance(x, Mapping) else list(enumerate(x))

    th, tg, gr = dict(items(theta)), dict(items(theta_target)), dict(items(grad))
    wi = dict(items(within)) if within is not None else {}
    if set(th) != set(tg) or set(th) != set(gr) or (within is not None and set(wi) != set(th)):
        raise ConfigError("select_restore_mask: theta, theta_target, grad (and within) must have the same tensors")
    if k < 0:
        raise ConfigError(f"k must be >= 0; got {k}")
    selected: dict[Any, Tensor] = {}
    for key, t in th.items():
        g = gr[key].to(t.device)
        d = t.detach() - tg[key].to(t.device)
        s = ((d > 0) & (g > 0)) | ((d < 0) & (g < 0))
        if within is not None:
            s &= wi[key].to(t.device).bool()
        selected[key] = s
    counts = sum(int(s.sum()) for s in selected.values())
    if k == 0 or counts == 0:
        return {key: torch.zeros_like(s) for key, s in selected.items()}
    if k >= counts:
        return selected
    values = torch.cat([gr[key].to(s.device)[s].abs().flatten().float().cpu() for key, s in selected.items()])
    tau = torch.topk(values, k).values[-1]
    out = {}
    for key, s in selected.items():
        a = gr[key].to(s.device).abs().float()
        out[key] = s & ((a > tau.to(a.device)) if strict else (a >= tau.to(a.device)))
    return out


def budget(n_param: int, rate: float) -> int:
    """k = ⌈n · rate⌉ (restore: n = n_param, rate ρ_rec; rollback: n = |M'_sel|, rate 0.2)."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"rate must be in [0, 1]; got {rate}")
    # round first so 6 × 0.34 = 2.04… and 2 × 0.2 = 0.4000…01 land where the spec's arithmetic does
    return int(math.ceil(round(n_param * rate, 9)))
