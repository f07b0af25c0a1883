"""Shared-prompt encoding (`shared_prompt: true`): each prompt runs once, its KV cache serves all K completions.

The default batch repeats the prompt in every one of an example's K rows (`[N, P + C]`, N = Σ K_b). Here the
prompts run once as a left-padded `[B, P]` batch with `use_cache=True`; the cache is expanded to the N rows
(`index_select`, differentiable) and the completions `[N, C]` run on top of it with explicit positions, so every
token sees exactly the positions and attention it has in the repeated layout. The first completion token is
predicted from the prompt's last hidden state. Gradients flow into the prompt encoding through the cached keys
and values, so losses and gradients equal the repeated-prompt mode up to float rounding (tested to 1e-5).

The policy forward and, for `separate` / `adapter` references, the no-grad reference forward share prompts;
precomputed reference log-probs are cached per sequence as before. Every item of an example must share the same
prompt tokens (true unless a long completion forced a shorter prompt: raise `max_length` or set
`max_prompt_length`). Sequence-level objectives only (token-level ones keep the ordinary layout).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.data.tokenize import IGNORE_INDEX
from alignkit.errors import ConfigError, DataError
from alignkit.train.batching import Batch, TokenizedData
from alignkit.train.example_scores import ExtrasStep
from alignkit.train.logps import SeqLogProbs, decoder_and_head, head_logits, unwrap_causal_lm
from alignkit.train.reference import Reference, adapters_disabled


def _cache_kwarg(decoder: nn.Module) -> str:
    """transformers ≥ 5.2x names the cache argument `cache` (`past_key_values` is deprecated)."""
    import inspect

    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def shared_prompt_kernel(model: nn.Module, completion_ids: Tensor, completion_mask: Tensor, completion_labels: Tensor,
                         token_level: bool, *, prompt_ids: Tensor, prompt_mask: Tensor,
                         owner: Tensor) -> tuple[Tensor, Tensor]:
    """(sums `[N]`, counts `[N]`) of completion log-probs with each prompt encoded once.

    prompt_ids/prompt_mask `[B, P]` left-padded; completion_* `[N, C]` right-padded (labels −100 on padding);
    owner `[N]` the prompt (example) of each completion row.
    """
    if token_level:
        raise ConfigError("shared_prompt supports sequence-level objectives only")
    from transformers import DynamicCache

    decoder, head = decoder_and_head(model)
    lm = unwrap_causal_lm(model)
    p_pos = (prompt_mask.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache(config=lm.config)
    ckw = _cache_kwarg(decoder)
    p_out = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=p_pos, use_cache=True,
                    **{ckw: cache})
    p_hidden = p_out.last_hidden_state
    cache.reorder_cache(owner)  # [B, …] → [N, …]; index_select keeps the graph to the prompt encoding
    c = completion_ids.shape[1]
    c_pos = prompt_mask.sum(1)[owner].unsqueeze(1) + torch.arange(c, device=completion_ids.device)
    att = torch.cat([prompt_mask[owner], completion_mask], dim=1)
    c_out = decoder(input_ids=completion_ids, attention_mask=att, position_ids=c_pos, use_cache=True,
                    **{ckw: cache})
    # Hidden state predicting completion token j: the prompt's last (j = 0), else completion position j − 1.
    pred = torch.cat([p_hidden[:, -1][owner].unsqueeze(1), c_out.last_hidden_state[:, :-1]], dim=1)
    mask = completion_labels != IGNORE_INDEX
    rows, cols = mask.nonzero(as_tuple=True)
    logits = head_logits(model, head, pred[rows, cols])
    token_lp = -F.cross_entropy(logits, completion_labels[rows, cols], reduction="none")
    sums = torch.zeros(completion_ids.shape[0], dtype=token_lp.dtype, device=token_lp.device)
    return sums.index_add(0, rows, token_lp), mask.sum(1).to(token_lp.dtype)


def check_shared_prompts(data: TokenizedData) -> None:
    bad = sum(1 for e in data.examples if any(s.prompt_ids != e.seqs[0].prompt_ids for s in e.seqs[1:]))
    if bad:
        raise DataError(f"shared_prompt: {bad} examples have items whose prompts were truncated differently "
                        "(a long completion shortened the prompt); raise max_length, lower max_prompt_length, "
                        "or turn shared_prompt off")


def shared_prompt_tensors(data: TokenizedData, batch: Batch, pad_id: int) -> dict[str, Tensor]:
    """Left-padded prompts `[B, P]`, right-padded completions `[N, C]` and each row's owner, for a batch."""
    exs = [data.examples[int(i)] for i in batch.indices]
    prompts = [e.seqs[0].prompt_ids for e in exs]
    p_len = max(len(p) for p in prompts)
    prompt_ids = torch.full((len(exs), p_len), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(exs), p_len), dtype=torch.long)
    for b, p in enumerate(prompts):
        if p:
            prompt_ids[b, p_len - len(p):] = torch.tensor(p)
            prompt_mask[b, p_len - len(p):] = 1
    comps, owner = [], []
    for slot in batch.rows.tolist():
        b, k = divmod(slot, batch.K)
        comps.append(exs[b].seqs[k].completion_ids)
        owner.append(b)
    c_len = max(len(c) for c in comps)
    ids = torch.full((len(comps), c_len), pad_id, dtype=torch.long)
    att = torch.zeros((len(comps), c_len), dtype=torch.long)
    lab = torch.full((len(comps), c_len), IGNORE_INDEX, dtype=torch.long)
    for n, c in enumerate(comps):
        ids[n, : len(c)] = torch.tensor(c)
        att[n, : len(c)] = 1
        lab[n, : len(c)] = torch.tensor(c)
    return {"completion_ids": ids, "completion_mask": att, "completion_labels": lab, "prompt_ids": prompt_ids,
            "prompt_mask": prompt_mask, "owner": torch.tensor(owner, dtype=torch.long)}


class SharedPromptReference:
    """A `Reference` whose `separate` / `adapter` forwards also encode each prompt once (no grad)."""

    def __init__(self, inner: Reference, step: SharedPromptStep) -> None:
        self.inner, self.step = inner, step
        self.mode = inner.mode

    def __call__(self, policy: nn.Module, batch: Batch, split: str = "train", token_level: bool = False
                 ) -> tuple[SeqLogProbs | None, SeqLogProbs | None]:
        if self.mode not in ("separate", "adapter") or token_level or batch.kl is not None:
            return self.inner(policy, batch, split, token_level)
        runner = self.inner.model if self.mode == "separate" else policy
        ctx = adapters_disabled(policy) if self.mode == "adapter" else contextlib.nullcontext()
        assert runner is not None
        with torch.no_grad(), ctx:
            return self.step.forward(runner, batch, split), None


class SharedPromptStep(ExtrasStep):
    """ObjectiveStep whose policy forward encodes each prompt once (see the module docstring)."""

    def __init__(self, *args: Any, data: dict[str, TokenizedData], pad_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.spec.token_level:
            raise ConfigError(f"shared_prompt: objective {self.spec.name!r} is token-level; turn shared_prompt off")
        for d in data.values():
            check_shared_prompts(d)
        self.data, self.pad_id = data, pad_id
        self.reference = SharedPromptReference(self.reference, self)  # type: ignore[assignment]

    def forward(self, model: nn.Module, batch: Batch, split: str) -> SeqLogProbs:
        t = {k: v.to(batch.input_ids.device) for k, v in shared_prompt_tensors(self.data[split], batch,
                                                                               self.pad_id).items()}
        sums, counts = model(t.pop("completion_ids"), t.pop("completion_mask"), t.pop("completion_labels"), False,
                             kernel=shared_prompt_kernel, **t)
        return SeqLogProbs(sums, counts)
