"""Tokenise records once up front and collate them into one-forward batches, per data kind.

Every example becomes K sequences (sft/unpaired K=1, pairwise K=2 with column 0 = chosen, listwise K = list length)
sharing one tokenised prompt. A batch is ONE right-padded `[N, T]` tensor with N = the number of real sequences
(padding list items are not run at all) and T = the batch maximum; `rows` maps each sequence to its `[B, K]` slot.
For objectives that need KTO's KL estimate, the collator adds the mismatched pairs (x_i, y_{i−1}) within the batch
(spec/objectives.md §2.1, TRL's "cycle by one").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from alignkit.data.records import ListwiseExample, PairwiseExample, SFTExample, UnpairedExample
from alignkit.data.tokenize import (
    IGNORE_INDEX,
    Encoded,
    Template,
    TooLong,
    Truncation,
    TruncationStats,
    encode_completion,
    encode_prompt,
    fit_lengths,
)
from alignkit.errors import DataError

KIND_RECORD = {"sft": SFTExample, "pairwise": PairwiseExample, "unpaired": UnpairedExample,
               "listwise": ListwiseExample}


@dataclass
class TokenizedExample:
    """One record as K (prompt, completion) token sequences, plus what the objective may read."""

    index: int
    seqs: list[Encoded]
    prompt_ids: list[int]  # untruncated, for rebuilding KL pairs
    completion_ids: list[list[int]]  # untruncated, one per item
    scores: list[float] | None = None
    label: bool | None = None
    margin: float | None = None
    record: int = -1  # position of the source record (examples dropped as too long leave gaps)


@dataclass
class TokenizedData:
    kind: str
    examples: list[TokenizedExample]
    stats: TruncationStats
    max_length: int | None
    max_prompt_length: int | None
    truncation: Truncation
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def max_items(self) -> int:
        return max((len(e.seqs) for e in self.examples), default=1)

    def fingerprint(self) -> str:
        """Hash of every token id and truncation setting: identical iff the model sees identical inputs."""
        h = hashlib.sha256(f"{self.kind}|{self.max_length}|{self.max_prompt_length}|{self.truncation}".encode())
        for ex in self.examples:
            for s in ex.seqs:
                h.update(len(s.prompt_ids).to_bytes(4, "little"))
                h.update(torch.tensor(s.input_ids, dtype=torch.int64).numpy().tobytes())
            h.update(b"|")
        return h.hexdigest()[:24]


def _completions(record: object, kind: str) -> tuple[list[str], dict]:
    if kind == "sft" and isinstance(record, SFTExample):
        return [record.completion], {}
    if kind == "pairwise" and isinstance(record, PairwiseExample):
        return [record.chosen, record.rejected], {"margin": record.margin}
    if kind == "unpaired" and isinstance(record, UnpairedExample):
        return [record.completion], {"label": bool(record.label)}
    if kind == "listwise" and isinstance(record, ListwiseExample):
        if len(record.completions) != len(record.scores) or not record.completions:
            raise DataError(f"listwise record has {len(record.completions)} completions and "
                            f"{len(record.scores)} scores; they must match and be non-empty")
        return list(record.completions), {"scores": [float(s) for s in record.scores]}
    raise DataError(f"objective expects {kind!r} records ({KIND_RECORD[kind].__name__}), got "
                    f"{type(record).__name__}; convert the data first (alignkit data convert)")


def tokenize_records(records: Sequence[object], kind: str, tokenizer: PreTrainedTokenizerBase, *,
                     max_length: int | None = None, max_prompt_length: int | None = None,
                     truncation: Truncation = "keep_end", template: Template = "auto",
                     desc: str = "tokenising") -> TokenizedData:
    """Tokenise every record once; over-long ones are truncated or (policy `drop`) skipped, always counted.

    All K sequences of one example share the same prompt ids (each is fitted with the same policy).
    """
    if kind not in KIND_RECORD:
        raise DataError(f"the training engine handles data kinds {sorted(KIND_RECORD)}, not {kind!r}")
    from tqdm.auto import tqdm

    stats = TruncationStats()
    out: list[TokenizedExample] = []
    skipped = 0
    for pos, rec in enumerate(tqdm(records, desc=desc, leave=False, disable=len(records) < 200)):
        completions, extra = _completions(rec, kind)
        p = encode_prompt(tokenizer, rec.prompt, template)  # type: ignore[attr-defined]
        cs = [encode_completion(tokenizer, c) for c in completions]
        try:
            seqs = [fit_lengths(p, c, max_length, max_prompt_length, truncation, stats) for c in cs]
        except TooLong:
            skipped += 1
            continue
        out.append(TokenizedExample(len(out), seqs, p, cs, extra.get("scores"), extra.get("label"),
                                    extra.get("margin"), pos))
    if not out:
        raise DataError(f"no usable {kind} examples out of {len(records)} ({skipped} dropped as too long)")
    return TokenizedData(kind, out, stats, max_length, max_prompt_length, truncation, skipped)


@dataclass
class Batch:
    """One collated batch: a single `[N, T]` forward plus the `[B, K]` layout and per-example side data."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    rows: Tensor  # [N] flat slot b*K + k of each sequence
    B: int
    K: int
    item_mask: Tensor  # [B, K] bool
    indices: Tensor  # [B] example indices into the TokenizedData
    scores: Tensor | None = None
    unpaired_labels: Tensor | None = None
    margins: Tensor | None = None
    kl: tuple[Tensor, Tensor, Tensor] | None = None  # (input_ids, attention_mask, labels) of (x_i, y_{i-1})
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens run through the model, KL pairs included."""
        n = int(self.attention_mask.sum())
        if self.kl is not None:
            n += int(self.kl[1].sum())
        return n

    def to_slots(self, values: Tensor) -> Tensor:
        """Scatter per-sequence values `[N]` into `[B, K]` (padding items get 0)."""
        full = torch.zeros(self.B * self.K, dtype=values.dtype, device=values.device)
        return full.index_put((self.rows.to(values.device),), values).view(self.B, self.K)


def pad_sequences(seqs: Sequence[Encoded], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad to the longest sequence (training padding side): input_ids, attention_mask, labels."""
    t = max(len(s.input_ids) for s in seqs)
    n = len(seqs)
    ids = torch.full((n, t), pad_id, dtype=torch.long)
    att = torch.zeros((n, t), dtype=torch.long)
    lab = torch.full((n, t), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(seqs):
        L = len(s.input_ids)
        ids[i, :L] = torch.tensor(s.input_ids)
        att[i, :L] = 1
        lab[i, :L] = torch.tensor(s.labels)
    return ids, att, lab


def collate(data: TokenizedData, indices: Sequence[int], pad_id: int, *, with_kl: bool = False,
            K: int | None = None) -> Batch:
    """Build a `Batch` from example indices. `K` defaults to the data set's longest list (fixed across batches)."""
    exs = [data.examples[i] for i in indices]
    K = K or data.max_items
    B = len(exs)
    seqs: list[Encoded] = []
    rows: list[int] = []
    item_mask = torch.zeros(B, K, dtype=torch.bool)
    for b, ex in enumerate(exs):
        for k, s in enumerate(ex.seqs):
            seqs.append(s)
            rows.append(b * K + k)
            item_mask[b, k] = True
    ids, att, lab = pad_sequences(seqs, pad_id)
    batch = Batch(ids, att, lab, torch.tensor(rows, dtype=torch.long), B, K, item_mask,
                  torch.tensor(list(indices), dtype=torch.long))
    if data.kind == "listwise":
        sc = torch.zeros(B, K, dtype=torch.float32)
        for b, ex in enumerate(exs):
            sc[b, : len(ex.scores or [])] = torch.tensor(ex.scores or [], dtype=torch.float32)
        batch.scores = sc
    if data.kind == "unpaired":
        batch.unpaired_labels = torch.tensor([[bool(ex.label)] for ex in exs], dtype=torch.bool)
    if data.kind == "pairwise" and any(ex.margin is not None for ex in exs):
        batch.margins = torch.tensor([float(ex.margin or 0.0) for ex in exs], dtype=torch.float32)
    if with_kl:
        # Mismatched pairs (x_i, y_{i-1}): the completion of the previous example in the batch (TRL's cycle by one).
        kl = [fit_lengths(exs[b].prompt_ids, exs[(b - 1) % B].completion_ids[0], data.max_length,
                          data.max_prompt_length, "keep_end") for b in range(B)]
        batch.kl = pad_sequences(kl, pad_id)
    return batch
