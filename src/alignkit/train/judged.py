"""Judged records for CUT (spec §4.1, Xu et al. 2023): two contexts of the same completion in one forward.

A `JudgedExample(prompt, completion, judgment, score)` becomes up to two sequences of one example:
  column 0: the plain context (prompt, completion);
  column 1: the judgment context (the prompt with the judgment inserted by `judgment_template`, completion).
Both rows run in the same batched forward. A positive judgment (`score ≥ judged_positive_score`, or an empty
judgment) trains by plain SFT in the judgment-free context (spec: Align-P), so its judgment row is not built at
all. The completion is truncated to the same tokens in both contexts (the spec requires it to tokenise
identically), and the step re-aligns both rows' completion log-probs position by position into `[B, 1, T]`:
`lp.token_policy` (with the judgment), `extras["token_policy_plain"]`, `lp.token_mask`, `lp.labels` (True =
positive).

The template has `{prompt}` and `{judgment}` placeholders and is applied to the text of a string prompt or to the
last user message of a chat prompt, before the model's chat template.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from alignkit.data.records import JudgedExample, Prompt
from alignkit.data.tokenize import (
    Encoded,
    Template,
    TooLong,
    Truncation,
    TruncationStats,
    encode_completion,
    encode_prompt,
    fit_lengths,
)
from alignkit.errors import ConfigError, DataError
from alignkit.objectives.base import LogProbs
from alignkit.train.batching import Batch, TokenizedData, TokenizedExample
from alignkit.train.logps import SeqLogProbs
from alignkit.train.step import ObjectiveStep

_PLACEHOLDER = re.compile(r"\{(prompt|judgment)\}")


def judged_prompt(prompt: Prompt, judgment: str, template: str) -> Prompt:
    """The prompt of the judgment context: `template` filled in one pass (braces in the texts stay literal)."""
    if "{judgment}" not in template:
        raise ConfigError("judgment_template must contain {judgment} (and usually {prompt})")

    def fill(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: text if m.group(1) == "prompt" else judgment, template)

    if isinstance(prompt, str):
        return fill(prompt)
    messages = [dict(m) for m in prompt]
    for m in reversed(messages):
        if m.get("role") == "user":
            m["content"] = fill(m.get("content", ""))
            return messages
    raise DataError("a judged chat prompt needs a user message to attach the judgment to")


def is_positive(record: JudgedExample, positive_score: float) -> bool:
    """Align-P (spec §4.1, official code): a score ≥ the threshold, or no judgment at all."""
    return not record.judgment.strip() or (record.score is not None and record.score >= positive_score)


def tokenize_judged(records: Sequence[object], tokenizer: PreTrainedTokenizerBase, *, judgment_template: str,
                    positive_score: float, max_length: int | None = None, max_prompt_length: int | None = None,
                    truncation: Truncation = "keep_end", template: Template = "auto",
                    desc: str = "tokenising") -> TokenizedData:
    stats = TruncationStats()
    out: list[TokenizedExample] = []
    skipped = 0
    for pos, rec in enumerate(records):
        if not isinstance(rec, JudgedExample):
            raise DataError(f"objective expects 'judged' records (JudgedExample), got {type(rec).__name__}")
        positive = is_positive(rec, positive_score)
        p = encode_prompt(tokenizer, rec.prompt, template)
        c = encode_completion(tokenizer, rec.completion)
        try:
            seqs = [fit_lengths(p, c, max_length, max_prompt_length, truncation, stats)]
            if not positive:
                pj = encode_prompt(tokenizer, judged_prompt(rec.prompt, rec.judgment, judgment_template), template)
                seqs.append(fit_lengths(pj, c, max_length, max_prompt_length, truncation, stats))
        except TooLong:
            skipped += 1
            continue
        n = min(len(s.completion_ids) for s in seqs)  # the same response tokens in both contexts
        seqs = [Encoded(s.prompt_ids, s.completion_ids[:n]) for s in seqs]
        out.append(TokenizedExample(len(out), seqs, p, [c], label=positive, record=pos))
    if not out:
        raise DataError(f"no usable judged examples out of {len(records)} ({skipped} dropped as too long)")
    return TokenizedData("judged", out, stats, max_length, max_prompt_length, truncation, skipped)


def compact(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Left-align each row's masked values: `[N, T]` → `[N, Tc]` (Tc = most masked positions in a row)."""
    rows, cols = mask.nonzero(as_tuple=True)
    pos = (mask.long().cumsum(1) - 1)[rows, cols]
    width = int(mask.sum(1).max()) if mask.numel() else 0
    out = torch.zeros(mask.shape[0], width, dtype=values.dtype, device=values.device)
    out = out.index_put((rows, pos), values[rows, cols])
    m = torch.zeros(mask.shape[0], width, dtype=torch.bool, device=mask.device).index_put(
        (rows, pos), torch.ones_like(rows, dtype=torch.bool))
    return out, m


class JudgedStep(ObjectiveStep):
    """CUT's step: the plain and judgment rows of a batch, re-aligned over the response tokens."""

    def __init__(self, *args: Any, labels: dict[str, Tensor], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = labels  # split → [N] bool, True = positive judgment

    def extend(self, lp: LogProbs, batch: Batch, split: str, out: SeqLogProbs) -> None:
        assert out.tokens is not None and out.mask is not None
        tokens, mask = compact(out.tokens, out.mask)
        full, fmask = self._tokens(batch, tokens), self._tokens(batch, mask)
        lp.extras["token_policy_plain"] = full[:, :1]
        lp.token_mask = fmask[:, :1]
        lp.token_policy = full[:, 1:2] if batch.K > 1 else torch.zeros_like(full[:, :1])
        lp.labels = self.labels[split][batch.indices.cpu()].to(tokens.device).view(-1, 1)
        lp.policy, lp.lengths = lp.policy[:, :1], lp.lengths[:, :1]
        lp.item_mask = None


def judged_labels(data: TokenizedData) -> Tensor:
    return torch.tensor([bool(e.label) for e in data.examples], dtype=torch.bool)
