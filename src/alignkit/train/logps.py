"""Per-sequence completion log-probs, computed only where they are needed (DESIGN.md, performance rules).

S(y) = Σ_{t ∈ completion} log π(y_t | x, y_<t)  (spec/objectives.md §0): logits at position t predict the label
at t+1, prompt and padding labels are -100 and contribute nothing.

How: the base transformer gives hidden states `[N, T, H]`; only the rows that predict a completion token are
gathered (`M ≪ N·T`), the LM head is applied to those rows alone (`[M, V]` instead of `[N, T, V]`), and a fused
`F.cross_entropy(reduction="none")` gives their log-probs. Nothing ever builds a full-sequence, full-vocabulary
`log_softmax`. The sums are scattered back per sequence with `index_add_`.

`CompletionLogProbs` wraps a causal LM as an `nn.Module` whose `forward` does all of this, so that Accelerate's
DDP/FSDP/DeepSpeed wrapper sees a real forward call (gradient synchronisation hooks run) while the log-prob
kernel still reaches inside the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.data.tokenize import IGNORE_INDEX
from alignkit.errors import ModelError


@dataclass
class SeqLogProbs:
    """Per-row results of one forward: `sums` and `counts` are `[N]`; `tokens`/`mask` `[N, T-1]` when asked."""

    sums: Tensor
    counts: Tensor
    tokens: Tensor | None = None
    mask: Tensor | None = None


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers `*ForCausalLM` inside a peft / DDP / Accelerate wrapper (LoRA layers stay in place)."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP, DeepSpeed engine
            model = model.module
        elif hasattr(model, "get_base_model") and callable(model.get_base_model):  # peft
            model = model.get_base_model()
        else:
            break
    return model


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The base transformer (hidden states) and the LM head of a causal LM."""
    lm = unwrap_causal_lm(model)
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else getattr(lm, "model", None)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if decoder is None or head is None:
        raise ModelError(f"{type(lm).__name__} does not expose a decoder and an LM head (get_decoder / "
                         "get_output_embeddings); alignkit's log-prob kernel needs a causal LM")
    return decoder, head


def head_logits(model: nn.Module, head: nn.Module, hidden: Tensor) -> Tensor:
    """The LM head on selected hidden rows `[M, H]` → fp32 logits `[M, V]` (loss arithmetic in fp32, spec §0
    convention 4), with the model's final-logit soft-capping where it has one."""
    logits = head(hidden).float()
    softcap = getattr(unwrap_causal_lm(model).config, "final_logit_softcapping", None)
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def completion_logits(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(logits `[M, V]` at the M positions predicting completion tokens, their targets `[M]`, rows, cols)."""
    decoder, head = decoder_and_head(model)
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    targets = labels[:, 1:]
    rows, cols = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
    return head_logits(model, head, hidden[:, :-1][rows, cols]), targets[rows, cols], rows, cols


def completion_logps(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                     token_level: bool = False) -> SeqLogProbs:
    """Summed completion log-probs per row of a right-padded batch; per-token values only if `token_level`.

    `labels` is `input_ids` with prompt and padding positions set to -100.
    """
    logits, target, rows, cols = completion_logits(model, input_ids, attention_mask, labels)
    mask = labels[:, 1:] != IGNORE_INDEX
    token_lp = -F.cross_entropy(logits, target, reduction="none")
    n = input_ids.shape[0]
    sums = torch.zeros(n, dtype=token_lp.dtype, device=token_lp.device).index_add(0, rows, token_lp)
    counts = mask.sum(dim=1).to(token_lp.dtype)
    if not token_level:
        return SeqLogProbs(sums, counts)
    tokens = torch.zeros(mask.shape, dtype=token_lp.dtype, device=token_lp.device).index_put((rows, cols), token_lp)
    return SeqLogProbs(sums, counts, tokens, mask)


class CompletionLogProbs(nn.Module):
    """`forward(input_ids, attention_mask, labels)` → (sums `[N]`, counts `[N]`[, tokens, mask]).

    Holds the causal LM as `.model`; prepare this wrapper with Accelerate so distributed wrappers see the call.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, token_level: bool = False,
                kernel: Callable[..., tuple[Tensor, ...]] | None = None, **kernel_args: Any) -> tuple[Tensor, ...]:
        if kernel is not None:  # another log-prob kernel (teacher top-k, shared prompt) inside this forward call
            return kernel(self.model, input_ids, attention_mask, labels, token_level, **kernel_args)
        r = completion_logps(self.model, input_ids, attention_mask, labels, token_level)
        if token_level:
            assert r.tokens is not None and r.mask is not None
            return r.sums, r.counts, r.tokens, r.mask
        return r.sums, r.counts


def as_seq_logprobs(out: tuple[Tensor, ...]) -> SeqLogProbs:
    return SeqLogProbs(*out)


def naive_completion_logps(model: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                           labels: Tensor) -> Tensor:
    """Reference implementation (full logits + log_softmax + gather), for tests only."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    lp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(dim=1)
