"""The teacher slot of the offline engine: top-k teacher distributions for DCKD and ADPA (spec §5, Gao et al. 2025).

Before training, the teacher (`teacher_model`, the DPO-aligned model π_dpo) and for ADPA its SFT reference
(`teacher_reference_model`, π_ref^T) run once, teacher-forced, over every completion of the data. At each
completion position we keep `teacher_topk` vocabulary ids and the teachers' log-probs there (spec: "top-k
compressed"); the table is cached on disk like the reference (`$ALIGNKIT_CACHE/teacher/<key>.safetensors`, key =
data fingerprint + both teachers' fingerprints + k), so no teacher stays in memory while training. Per batch the
engine loads the rows, runs the student once with a kernel that also gathers log π_θ at the stored ids
(`policy_topk_logp`, differentiable), and fills `extras` with `[B, 2, T, k]` tensors aligned with `token_mask`.

ADPA support: the union of both teachers' top-k (2k columns). Unlike the derived code, which fills ids missing from
one teacher's top-k with its minimum top-k probability, both teachers are scored *exactly* at every id (we hold the
full distributions). Ids the reference repeats from the teacher's half get the floor 1e-7 in both tensors, so
their advantage is 0 and they add nothing.

Data for ADPA: column 1 ("rejected") must hold the *student's own sample* y^S for the prompt (the states s_t of the
ADPA term), column 0 ("chosen") the dataset's preferred response (SFT term). Build it by sampling the student
(e.g. `alignkit generate`) and writing `{"prompt", "chosen": y_w, "rejected": y^S}`. DCKD uses ordinary pairs.
The teachers must share the student's tokenizer (the ids are vocabulary ids); this is checked.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.data.tokenize import IGNORE_INDEX
from alignkit.errors import ConfigError, TrainingError
from alignkit.models import cache_dir, load_model, model_fingerprint
from alignkit.objectives.base import LogProbs
from alignkit.train.batching import Batch, TokenizedData, collate
from alignkit.train.logps import SeqLogProbs, completion_logits
from alignkit.train.reference import cached_tensors, freeze
from alignkit.train.step import ObjectiveStep

LOG_FLOOR = math.log(1e-7)


def topk_kernel(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, token_level: bool,
                *, gather_ids: Tensor) -> tuple[Tensor, ...]:
    """`completion_logps` (token level) plus log π(v) at `gather_ids` `[M, k]` (the rows of the completion mask,
    row-major): (sums, counts, tokens, mask, topk `[M, k]`). The log-normaliser is over the full vocabulary, but
    only at completion positions."""
    logits, target, rows, cols = completion_logits(model, input_ids, attention_mask, labels)
    if gather_ids.shape[0] != logits.shape[0]:
        raise TrainingError(f"teacher table has {gather_ids.shape[0]} completion positions for this batch, the "
                            f"student sees {logits.shape[0]}; the cache does not match the data (clear it)")
    logz = torch.logsumexp(logits, dim=-1)
    token_lp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logz
    topk = logits.gather(-1, gather_ids) - logz.unsqueeze(-1)
    mask = labels[:, 1:] != IGNORE_INDEX
    n = input_ids.shape[0]
    sums = torch.zeros(n, dtype=token_lp.dtype, device=token_lp.device).index_add(0, rows, token_lp)
    tokens = torch.zeros(mask.shape, dtype=token_lp.dtype, device=token_lp.device).index_put((rows, cols), token_lp)
    return sums, mask.sum(dim=1).to(token_lp.dtype), tokens, mask, topk


@dataclass
class TeacherTable:
    """Flat per-position teacher values for one split; `counts[e, k]` completion positions of example e, item k."""

    ids: Tensor  # [M_total, k'] long
    teacher: Tensor  # [M_total, k'] log π_dpo
    reference: Tensor | None  # [M_total, k'] log π_ref^T (ADPA)
    counts: Tensor  # [N, K] long

    def __post_init__(self) -> None:
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.counts.reshape(-1).cumsum(0)])

    def rows_for(self, batch: Batch) -> Tensor:
        """Flat row indices of the batch's completion positions, in the student kernel's (row-major) order."""
        K = self.counts.shape[1]
        parts = []
        for slot in batch.rows.tolist():
            b, k = divmod(slot, batch.K)
            j = int(batch.indices[b]) * K + k
            parts.append(torch.arange(int(self.offsets[j]), int(self.offsets[j + 1])))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def compute_teacher_table(teacher: nn.Module, ref_teacher: nn.Module | None, data: TokenizedData, pad_id: int,
                          k: int, batch_size: int, device: Any, show: bool = True) -> TeacherTable:
    from tqdm.auto import tqdm

    ids_l, t_l, r_l = [], [], []
    counts = torch.zeros(len(data), data.max_items, dtype=torch.long)
    for start in tqdm(range(0, len(data), batch_size), desc="teacher top-k", leave=False, disable=not show):
        idx = list(range(start, min(start + batch_size, len(data))))
        b = collate(data, idx, pad_id)
        args = (b.input_ids.to(device), b.attention_mask.to(device), b.labels.to(device))
        t_logits, _, _, _ = completion_logits(teacher, *args)
        t_lp = t_logits.log_softmax(-1)
        top = t_lp.topk(min(k, t_lp.shape[-1]), dim=-1).indices
        if ref_teacher is None:
            ids_l.append(top.cpu())
            t_l.append(t_lp.gather(-1, top).cpu())
        else:
            r_lp = completion_logits(ref_teacher, *args)[0].log_softmax(-1)
            r_top = r_lp.topk(top.shape[-1], dim=-1).indices
            union = torch.cat([top, r_top], dim=-1)
            repeated = (r_top.unsqueeze(-1) == top.unsqueeze(-2)).any(-1)  # reference ids already in the first half
            dup = torch.cat([torch.zeros_like(repeated), repeated], dim=-1)
            floor = torch.full_like(union, LOG_FLOOR, dtype=t_lp.dtype)
            ids_l.append(union.cpu())
            t_l.append(torch.where(dup, floor, t_lp.gather(-1, union)).cpu())
            r_l.append(torch.where(dup, floor, r_lp.gather(-1, union)).cpu())
        per_seq = (b.labels[:, 1:] != IGNORE_INDEX).sum(1)
        counts[start:start + len(idx)] = b.to_slots(per_seq).long()
    return TeacherTable(torch.cat(ids_l).long(), torch.cat(t_l).float(),
                        torch.cat(r_l).float() if r_l else None, counts)


def teacher_cache_key(data: TokenizedData, fingerprints: list[str], k: int, template: str) -> str:
    h = hashlib.sha256(f"{data.fingerprint()}|{'|'.join(fingerprints)}|k{k}|{template}|teacher-v1".encode())
    return h.hexdigest()[:32]


def load_or_compute_teacher(teacher: nn.Module, ref_teacher: nn.Module | None, data: TokenizedData, key: str,
                            pad_id: int, k: int, batch_size: int, device: Any, *, main: bool,
                            log: Any = print) -> TeacherTable:
    def compute() -> dict[str, Tensor]:
        table = compute_teacher_table(teacher, ref_teacher, data, pad_id, k, batch_size, device, show=main)
        tensors = {"ids": table.ids.int(), "teacher": table.teacher, "counts": table.counts}
        return tensors if table.reference is None else {**tensors, "reference": table.reference}

    t = cached_tensors(cache_dir() / "teacher" / f"{key}.safetensors", key, "teacher top-k", compute,
                       lambda t: tuple(t["counts"].shape) == (len(data), data.max_items), main=main, log=log)
    return TeacherTable(t["ids"].long(), t["teacher"], t.get("reference"), t["counts"].long())


def check_same_vocabulary(student_tok: Any, teacher_tok: Any, name: str) -> None:
    if len(student_tok) != len(teacher_tok) or student_tok.get_vocab() != teacher_tok.get_vocab():
        raise ConfigError(f"{name} has a different vocabulary ({len(teacher_tok)} tokens) from the student "
                          f"({len(student_tok)}); top-k distillation needs the same tokenizer")


def build_teacher_tables(cfg: Any, spec_name: str, tokenizer: Any, splits: dict[str, TokenizedData], pad_id: int,
                         batch_size: int, device: Any, accelerator: Any, log: Any) -> dict[str, TeacherTable]:
    """Load the teacher(s), precompute (or reuse) the top-k tables of every split, free the teachers."""
    if not cfg.teacher_model:
        raise ConfigError(f"objective {spec_name!r} needs a teacher: set teacher_model (the aligned/DPO teacher, "
                          "same tokenizer as the student)")
    need_ref = spec_name == "adpa"
    if need_ref and not cfg.teacher_reference_model:
        raise ConfigError("objective 'adpa' needs teacher_reference_model (the teacher's SFT reference) besides "
                          "teacher_model")
    # Tiny seeded models get their own seeds so that `tiny-random` teachers differ from a `tiny-random` student.
    teacher, t_tok = load_model(cfg.teacher_model, seed=cfg.seed + 1)
    check_same_vocabulary(tokenizer, t_tok, f"teacher_model {cfg.teacher_model!r}")
    teacher = freeze(teacher).to(device)
    fps = [model_fingerprint(teacher, cfg.teacher_model)]
    ref_teacher = None
    if need_ref:
        ref_teacher, r_tok = load_model(cfg.teacher_reference_model, seed=cfg.seed + 2)
        check_same_vocabulary(tokenizer, r_tok, f"teacher_reference_model {cfg.teacher_reference_model!r}")
        ref_teacher = freeze(ref_teacher).to(device)
        fps.append(model_fingerprint(ref_teacher, cfg.teacher_reference_model))
    main = accelerator.is_main_process
    tables: dict[str, TeacherTable] = {}
    for split, data in splits.items():
        key = teacher_cache_key(data, fps, cfg.teacher_topk, cfg.template)
        with accelerator.main_process_first():  # the main process writes the cache, the others read it
            tables[split] = load_or_compute_teacher(teacher, ref_teacher, data, key, pad_id, cfg.teacher_topk,
                                                    batch_size, device, main=main, log=log)
    del teacher, ref_teacher
    return tables


def _scatter(batch: Batch, mask: Tensor, flat: Tensor, fill: float) -> Tensor:
    """Flat per-position rows `[M, k]` → `[B, K, T, k]` at the completion positions of `mask` `[N, T]`."""
    n_rows, cols = mask.nonzero(as_tuple=True)
    slots = batch.rows.to(mask.device)[n_rows]
    full = torch.full((batch.B * batch.K, mask.shape[1], flat.shape[-1]), fill, dtype=flat.dtype,
                      device=flat.device)
    full = full.index_put((slots, cols), flat)
    return full.view(batch.B, batch.K, mask.shape[1], flat.shape[-1])


class TeacherStep(ObjectiveStep):
    """ObjectiveStep whose policy forward also gathers the student's log-probs at the teacher's top-k ids."""

    def __init__(self, *args: Any, tables: dict[str, TeacherTable], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tables = tables
        self._rows: Tensor | None = None
        self._topk: Tensor | None = None
        self._ids: Tensor | None = None

    def forward(self, model: nn.Module, batch: Batch, split: str) -> SeqLogProbs:
        table = self.tables[split]
        self._rows = table.rows_for(batch)
        self._ids = table.ids[self._rows].to(batch.input_ids.device)
        out = model(batch.input_ids, batch.attention_mask, batch.labels, True, kernel=topk_kernel,
                    gather_ids=self._ids)
        self._topk = out[4]
        return SeqLogProbs(*out[:4])

    def extend(self, lp: LogProbs, batch: Batch, split: str, out: SeqLogProbs) -> None:
        table = self.tables[split]
        assert out.mask is not None and self._rows is not None and self._topk is not None and self._ids is not None
        dev = self._topk.device
        rows = self._rows
        lp.extras["policy_topk_logp"] = _scatter(batch, out.mask, self._topk, LOG_FLOOR)
        lp.extras["teacher_topk_ids"] = _scatter(batch, out.mask, self._ids, 0)
        lp.extras["teacher_topk_logp"] = _scatter(batch, out.mask, table.teacher[rows].to(dev), LOG_FLOOR)
        if table.reference is not None:
            lp.extras["ref_teacher_topk_logp"] = _scatter(batch, out.mask, table.reference[rows].to(dev), LOG_FLOOR)
        self._rows = self._topk = self._ids = None


__all__ = ["TeacherStep", "TeacherTable", "build_teacher_tables", "compute_teacher_table", "topk_kernel"]
