"""Describe a dataset: counts by kind and, with a tokenizer, token-length summaries and truncation counts.

Token counts use the shared tokenisation (`alignkit.data.tokenize`): the prompt as rendered through the chat
template, each completion with its EOS. A "sequence" is one prompt + one completion (a pair gives two, a ranked
list K). Truncation counts say what the `keep_end` policy would do at `max_length` (and `max_prompt_length`);
`over_max_length` is how many sequences the `drop` policy would drop.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from alignkit.data.convert import prompt_key
from alignkit.data.io import kind_of
from alignkit.data.records import (
    JudgedExample,
    ListwiseExample,
    PairwiseExample,
    Record,
    ScoredExample,
    SFTExample,
    UnpairedExample,
)
from alignkit.data.tokenize import (
    Template,
    TruncationStats,
    encode_completion,
    encode_prompt,
    fit_lengths,
)


def completions_of(record: Record) -> list[str]:
    """Every completion text a record carries (none for prompt records)."""
    if isinstance(record, PairwiseExample):
        return [record.chosen, record.rejected]
    if isinstance(record, ListwiseExample):
        return list(record.completions)
    if isinstance(record, (SFTExample, UnpairedExample, ScoredExample, JudgedExample)):
        return [record.completion]
    return []


@dataclass
class LengthSummary:
    count: int
    min: int
    mean: float
    p50: float
    p95: float
    max: int

    @classmethod
    def of(cls, lengths: Sequence[int]) -> LengthSummary | None:
        if not lengths:
            return None
        a = np.asarray(lengths)
        return cls(len(a), int(a.min()), float(a.mean()), float(np.percentile(a, 50)),
                   float(np.percentile(a, 95)), int(a.max()))

    def row(self) -> str:
        return (f"min {self.min}, mean {self.mean:.1f}, p50 {self.p50:.0f}, p95 {self.p95:.0f}, "
                f"max {self.max} (n={self.count})")


@dataclass
class DataStats:
    records: int
    kinds: dict[str, int]
    unique_prompts: int
    chat_prompts: int
    details: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: LengthSummary | None = None
    completion_tokens: LengthSummary | None = None
    max_length: int | None = None
    max_prompt_length: int | None = None
    truncation: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def lines(self) -> list[str]:
        out = [f"records: {self.records} (" + ", ".join(f"{k} {n}" for k, n in self.kinds.items()) + ")",
               f"unique prompts: {self.unique_prompts} ({self.chat_prompts} chat, "
               f"{self.records - self.chat_prompts} plain text)"]
        out += [f"{name}: {value}" for name, value in self.details.items()]
        if self.prompt_tokens is not None:
            out.append(f"prompt tokens: {self.prompt_tokens.row()}")
        if self.completion_tokens is not None:
            out.append(f"completion tokens (with EOS): {self.completion_tokens.row()}")
        if self.truncation:
            t = self.truncation
            limits = f"max_length={self.max_length}" + (
                f", max_prompt_length={self.max_prompt_length}" if self.max_prompt_length else "")
            out.append(f"truncation at {limits}: {t['sequences']} sequences, {t['over_max_length']} too long "
                       f"(dropped under policy 'drop'); under 'keep_end' {t['prompt_truncated']} prompts and "
                       f"{t['completion_truncated']} completions truncated")
        return out


def _details(records: Sequence[Record]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    pairs = [r for r in records if isinstance(r, PairwiseExample)]
    if pairs:
        details["pairs with margin"] = sum(r.margin is not None for r in pairs)
    unpaired = [r for r in records if isinstance(r, UnpairedExample)]
    if unpaired:
        labels = Counter(r.label for r in unpaired)
        details["labels"] = f"{labels[True]} desirable, {labels[False]} undesirable"
    lists = [r for r in records if isinstance(r, ListwiseExample)]
    if lists:
        sizes = [len(r.completions) for r in lists]
        details["list sizes"] = f"min {min(sizes)}, mean {np.mean(sizes):.1f}, max {max(sizes)}"
        details["lists with tied scores"] = sum(len(set(r.scores)) < len(r.scores) for r in lists)
    scored = [r for r in records if isinstance(r, ScoredExample)]
    if scored:
        names = Counter(name for r in scored for name in r.attributes)
        details["attributes"] = ", ".join(f"{k} ({n})" for k, n in sorted(names.items()))
    judged = [r for r in records if isinstance(r, JudgedExample)]
    if judged:
        details["judged with score"] = sum(r.score is not None for r in judged)
    return details


def describe(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase | None = None, *,
             max_length: int | None = None, max_prompt_length: int | None = None, template: Template = "auto",
             progress: bool = False) -> DataStats:
    """Counts by kind and (with a tokenizer) token-length summaries and truncation counts."""
    kinds = Counter(kind_of(r) for r in records)
    stats = DataStats(
        records=len(records), kinds=dict(kinds.most_common()),
        unique_prompts=len({prompt_key(r.prompt) for r in records}),
        chat_prompts=sum(not isinstance(r.prompt, str) for r in records), details=_details(records),
        max_length=max_length, max_prompt_length=max_prompt_length)
    if tokenizer is None:
        return stats
    prompt_lengths: list[int] = []
    completion_lengths: list[int] = []
    trunc = TruncationStats()
    over = 0
    for record in tqdm(records, desc="tokenising", unit="rec", disable=not progress or None):
        prompt_ids = encode_prompt(tokenizer, record.prompt, template)
        prompt_lengths.append(len(prompt_ids))
        for completion in completions_of(record):
            completion_ids = encode_completion(tokenizer, completion)
            completion_lengths.append(len(completion_ids))
            if max_length is not None or max_prompt_length is not None:
                total = len(prompt_ids) + len(completion_ids)
                over += (max_length is not None and total > max_length) or (
                    max_prompt_length is not None and len(prompt_ids) > max_prompt_length)
                fit_lengths(prompt_ids, completion_ids, max_length, max_prompt_length, "keep_end", trunc)
    stats.prompt_tokens = LengthSummary.of(prompt_lengths)
    stats.completion_tokens = LengthSummary.of(completion_lengths)
    if max_length is not None or max_prompt_length is not None:
        stats.truncation = {"sequences": trunc.examples, "over_max_length": int(over),
                            "prompt_truncated": trunc.prompt_truncated,
                            "completion_truncated": trunc.completion_truncated}
    return stats
