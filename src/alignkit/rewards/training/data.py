"""Reward-model data: records → token ids (`RMData`) → padded batches (`RMBatch`), and the batch sources.

Records are encoded exactly as `RewardModel.encode` reads them at scoring time (chat template, EOS, principles in
the system message), so training and scoring see the same tokens. Pairwise objectives also take ranked lists
(every pair with different scores; spec objectives.md §7.1). Every record left out is counted with its reason.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from alignkit.data.records import ListwiseExample, PairwiseExample, Prompt, ScoredExample
from alignkit.data.tokenize import TooLong, TruncationStats, encode_example, encode_prompt
from alignkit.errors import ConfigError, DataError, TrainingError
from alignkit.rewards.losses import LLAMA2_MARGINS
from alignkit.rewards.model import (
    HELPSTEER2_ATTRIBUTES,
    encode_raw_text,
    with_principles,
)
from alignkit.rewards.training.config import PRINCIPLE_FIELDS, TASK_FIELDS, USER_FIELDS, RewardTrainConfig


@dataclass
class RMData:
    """Tokenised RM training data. Pairwise objectives fill `chosen`/`rejected` (and `prompts` for PAL), the
    regression objective `seqs`/`labels`; remodetect fills `chosen` (LLM text), `rejected` (human text) and
    `middle` (the mixed text). `groups` holds task ids (MORE) or user ids (PAL), −1 = unseen."""

    objective: str
    chosen: list[list[int]] = field(default_factory=list)
    rejected: list[list[int]] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)
    middle: list[list[int]] = field(default_factory=list)
    seqs: list[list[int]] = field(default_factory=list)
    labels: list[list[float]] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)
    prompt_keys: list[str] = field(default_factory=list)
    stats: TruncationStats = field(default_factory=TruncationStats)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seqs) if self.objective == "regression" else len(self.chosen)

    def skip_summary(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"


@dataclass
class RMBatch:
    """One forward's worth of sequences. Pairwise: rows [0, B) chosen, [B, 2B) rejected, [2B, 3B) prompts (PAL)
    or mixed texts (remodetect)."""

    input_ids: Tensor
    attention_mask: Tensor
    n_pairs: int = 0
    labels: Tensor | None = None
    margins: Tensor | None = None
    groups: Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: Any) -> RMBatch:
        return RMBatch(*(t.to(device) if isinstance(t, Tensor) else t for t in
                         (self.input_ids, self.attention_mask, self.n_pairs, self.labels, self.margins,
                          self.groups)))


def pad_right(seqs: Sequence[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad to the batch maximum (pooling reads the last attended token, so any padding side works)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, :len(s)] = 1
    return ids, att


def collate_rm(data: RMData, indices: Sequence[int], pad_id: int) -> RMBatch:
    idx = list(indices)
    if not idx:
        raise TrainingError("collate_rm: empty batch")
    if data.objective == "regression":
        ids, att = pad_right([data.seqs[i] for i in idx], pad_id)
        return RMBatch(ids, att, labels=torch.tensor([data.labels[i] for i in idx], dtype=torch.float32))
    rows = [data.chosen[i] for i in idx] + [data.rejected[i] for i in idx]
    if data.objective == "pal":
        rows += [data.prompts[i] for i in idx]
    if data.objective == "remodetect":
        rows += [data.middle[i] for i in idx]
    ids, att = pad_right(rows, pad_id)
    groups = torch.tensor([data.groups[i] for i in idx], dtype=torch.long) if data.groups else None
    margins = torch.tensor([data.margins[i] for i in idx], dtype=torch.float32) if data.margins else None
    return RMBatch(ids, att, n_pairs=len(idx), margins=margins, groups=groups)


def _meta_value(record: Any, names: Sequence[str]) -> Any:
    for name in names:
        if record.metadata.get(name) is not None:
            return record.metadata[name]
    return None


def _fields(configured: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    return (configured,) if configured else defaults


def _margin_of(record: PairwiseExample, cfg: RewardTrainConfig, where: str) -> float:
    if cfg.margin == "none":
        return 0.0
    if cfg.margin == "column":
        return float(record.margin) if record.margin is not None else 0.0
    rating = record.metadata.get(cfg.rating_field)
    if rating is None:
        raise DataError(f"margin={cfg.margin} needs a Llama 2 rating in column {cfg.rating_field!r}", source=where)
    scheme = LLAMA2_MARGINS[cfg.margin]
    key = str(rating).strip().lower()
    if key not in scheme:
        raise DataError(f"rating {rating!r} is not one of {sorted(scheme)}", source=where, field=cfg.rating_field)
    return scheme[key]


def resolve_attributes(records: Sequence[ScoredExample], cfg: RewardTrainConfig) -> list[str]:
    """The regression head's attribute order: the config's, else HelpSteer2's when the data's names are among
    them, else every name seen in the data (sorted)."""
    if cfg.attributes:
        return list(cfg.attributes)
    seen = sorted({k for r in records for k in r.attributes})
    if not seen:
        raise DataError("scored records carry no attributes; a regression RM needs at least one")
    if set(seen) <= set(HELPSTEER2_ATTRIBUTES):
        return list(HELPSTEER2_ATTRIBUTES)
    return seen


def group_names_of(records: Sequence[Any], names: Sequence[str], what: str) -> list[str]:
    values = [_meta_value(r, names) for r in records]
    missing = sum(v is None for v in values)
    if missing:
        raise DataError(f"{missing} of {len(values)} records have no {what} id; put it in a column named "
                        f"{' or '.join(names)} (or set {what}_field)")
    return sorted({str(v) for v in values})


def tokenize_rm_records(records: Sequence[Any], cfg: RewardTrainConfig, tokenizer: Any, *,
                        group_names: Sequence[str] | None = None, attributes: Sequence[str] | None = None,
                        desc: str = "tokenising") -> RMData:
    """Encode records exactly as `RewardModel.encode` reads them (chat template, EOS, principles in the system
    message), applying the truncation policy and counting every record left out and why."""
    objective = cfg.objective
    data = RMData(objective)
    trunc = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length, policy=cfg.truncation,
                 template=cfg.template, stats=data.stats)
    group_fields: tuple[str, ...] = ()
    if objective in ("more", "pal"):
        group_fields = _fields(cfg.task_field if objective == "more" else cfg.user_field,
                               TASK_FIELDS if objective == "more" else USER_FIELDS)
        data.group_names = list(group_names) if group_names is not None else group_names_of(
            records, group_fields, "task" if objective == "more" else "user")
    index = {n: i for i, n in enumerate(data.group_names)}
    unseen = 0

    def skip(why: str) -> None:
        data.skipped[why] = data.skipped.get(why, 0) + 1

    for n, record in enumerate(tqdm(records, desc=desc, disable=len(records) < 256, leave=False)):
        where = f"record {n}"
        if objective == "remodetect":
            llm, mixed, human = remodetect_triplet(record, where)
            limit = cfg.max_length or 1024  # as RewardModel(max_length=cfg.max_length or 1024) reads text
            data.chosen.append(encode_raw_text(tokenizer, llm, limit))
            data.middle.append(encode_raw_text(tokenizer, mixed, limit))
            data.rejected.append(encode_raw_text(tokenizer, human, limit))
            continue
        prompt: Prompt = record.prompt
        if objective == "principle":
            principle = _meta_value(record, _fields(cfg.principle_field, PRINCIPLE_FIELDS)) or cfg.principles
            if not principle:
                raise DataError("principle objective: no principle in the record's metadata (`principle`) and "
                                "none in the config (`principles`)", source=where)
            prompt = with_principles(prompt, principle)
        try:
            if objective == "regression":
                if not isinstance(record, ScoredExample):
                    raise DataError(f"regression needs scored records, got {type(record).__name__}", source=where)
                attrs = list(attributes or [])
                labels = [float(record.attributes[a]) if record.attributes.get(a) is not None else -100.0
                          for a in attrs]
                if all(v == -100.0 for v in labels):
                    skip("with none of the head's attributes")
                    continue
                extra = set(record.attributes) - set(attrs)
                if extra:
                    data.skipped["attribute values not in the head (ignored, record kept)"] = data.skipped.get(
                        "attribute values not in the head (ignored, record kept)", 0) + len(extra)
                enc = encode_example(tokenizer, prompt, record.completion, **trunc)  # type: ignore[arg-type]
                data.seqs.append(enc.input_ids)
                data.labels.append(labels)
                data.prompt_keys.append(json.dumps(record.prompt, sort_keys=True))
                continue
            if not isinstance(record, PairwiseExample):
                raise DataError(f"objective {objective} needs pairwise records, got {type(record).__name__}",
                                source=where)
            if record.chosen == record.rejected:
                skip("with identical chosen and rejected (no preference)")
                continue
            chosen = encode_example(tokenizer, prompt, record.chosen, **trunc)  # type: ignore[arg-type]
            rejected = encode_example(tokenizer, prompt, record.rejected, **trunc)  # type: ignore[arg-type]
        except TooLong:
            skip("too long (truncation=drop)")
            continue
        data.chosen.append(chosen.input_ids)
        data.rejected.append(rejected.input_ids)
        data.margins.append(_margin_of(record, cfg, where))
        if objective == "pal":
            data.prompts.append(encode_prompt(tokenizer, prompt, cfg.template)[-(cfg.max_prompt_length or 10**9):])
        if group_fields:
            gid = index.get(str(_meta_value(record, group_fields)), -1)
            unseen += gid < 0
            data.groups.append(gid)
    if unseen:
        data.skipped[f"with a {'task' if objective == 'more' else 'user'} unseen in training (kept, id −1)"] = unseen
    if not any(data.margins):
        data.margins = []
    return data


TRIPLET_COLUMNS = (("llm", "mixed", "human"), ("pos", "perturb", "neg"))  # ours, and the released code's


def remodetect_triplet(record: Any, where: str) -> tuple[str, str, str]:
    """(llm, mixed, human) of a ReMoDetect listwise record: three completions ordered by their scores (highest =
    LLM), so the list order alone never decides which text is human (`alignkit safety remodetect-data` writes
    them with scores [2, 1, 0])."""
    if not isinstance(record, ListwiseExample) or len(record.completions) != 3:
        raise DataError("objective remodetect needs listwise records with exactly 3 completions (LLM, mixed, "
                        "human text) and their scores; `alignkit safety remodetect-data` writes them",
                        source=where, field="completions")
    if len(set(record.scores)) != 3:
        raise DataError(f"remodetect scores must be three distinct values (LLM > mixed > human), got "
                        f"{record.scores}", source=where, field="scores")
    order = sorted(range(3), key=lambda i: -record.scores[i])
    llm, mixed, human = (record.completions[i] for i in order)
    return llm, mixed, human


def triplet_records(rows: Sequence[dict[str, Any]]) -> list[ListwiseExample]:
    """Listwise records [llm, mixed, human] with scores [2, 1, 0]; columns by name (llm/mixed/human or the
    code's pos/perturb/neg)."""
    out = []
    for i, row in enumerate(rows):
        names = next((n for n in TRIPLET_COLUMNS if all(k in row for k in n)), None)
        if names is None:
            raise DataError("a ReMoDetect row needs columns llm, mixed, human (or pos, perturb, neg); the order "
                            "of a list is never trusted", line=i + 1)
        texts = [" ".join(str(row[k]).split()) for k in names]
        if len(texts[0].split()) <= 1 or len(texts[2].split()) <= 1:
            continue
        out.append(ListwiseExample("", texts, [2.0, 1.0, 0.0], {"row": i}))
    return out


def read_replay_texts(path: str) -> list[str]:
    """Replay texts for remodetect's regulariser: a `text` column, or both sides of `chosen`/`rejected` pairs
    (the code samples HH-RLHF chosen + rejected), each after a string `prompt` when the row has one."""
    from alignkit.data.io import read_rows

    texts: list[str] = []
    for line, row in read_rows(path)[1]:
        keys = ["text"] if "text" in row else [k for k in ("chosen", "rejected") if k in row]
        if not keys:
            raise DataError("a replay row needs a text column, or chosen/rejected", source=path, line=line)
        prompt = row.get("prompt") if keys != ["text"] else None
        prefix = prompt + "\n" if isinstance(prompt, str) and prompt else ""
        for k in keys:
            if not isinstance(row[k], str) or not row[k].strip():
                raise DataError("needs a non-empty string", source=path, line=line, field=k)
            texts.append(prefix + row[k])
    if not texts:
        raise DataError("no replay texts", source=path)
    return texts


class RMSource:
    """`BatchSource` for `train_loop`: indices → RMBatch."""

    def __init__(self, data: RMData, pad_id: int) -> None:
        self.data, self.pad_id = data, pad_id

    def __len__(self) -> int:
        return len(self.data)

    def get(self, indices: list[int]) -> RMBatch:
        return collate_rm(self.data, indices, self.pad_id)


class TaskBalancedSource(RMSource):
    """MORE's resampling: position p of a batch draws from task p mod T, so every batch holds every task. The
    example is a pure function of the loop's index (so resumed runs see the same batches)."""

    def __init__(self, data: RMData, pad_id: int, batch_size: int) -> None:
        super().__init__(data, pad_id)
        by_task: dict[int, list[int]] = defaultdict(list)
        for i, g in enumerate(data.groups):
            by_task[g].append(i)
        self.tasks = [by_task[t] for t in range(len(data.group_names))]
        empty = [data.group_names[t] for t, m in enumerate(self.tasks) if not m]
        if empty:
            raise DataError(f"MORE: tasks {empty} have no training pairs left after tokenisation")
        if batch_size < len(self.tasks):
            raise ConfigError(f"MORE needs one example per task in each batch: batch_size {batch_size} < "
                              f"{len(self.tasks)} tasks")

    def get(self, indices: list[int]) -> RMBatch:
        t = len(self.tasks)
        picked = [self.tasks[p % t][i % len(self.tasks[p % t])] for p, i in enumerate(indices)]
        return collate_rm(self.data, picked, self.pad_id)


def _read(path: str, cfg: RewardTrainConfig) -> list[Any]:
    """Records of the objective's kind; pairwise objectives also take ranked lists (auto-detected)."""
    from alignkit.data.io import read_records

    if cfg.objective == "remodetect":
        return _read_triplets(path)
    found = read_records(path, None if cfg.data_kind == "pairwise" else cfg.data_kind)
    return list(found.records)


def _read_triplets(path: str) -> list[ListwiseExample]:
    """remodetect data: rows with llm/mixed/human (or pos/perturb/neg) columns, or completions + scores; the prompt
    is never fed (the RM reads the text alone), so rows need none."""
    from alignkit.data.io import read_rows

    rows = [row for _, row in read_rows(path)[1]]
    if rows and all("completions" in r and "scores" in r for r in rows):
        return [ListwiseExample("", list(r["completions"]), [float(x) for x in r["scores"]], {"row": i})
                for i, r in enumerate(rows)]
    try:
        records = triplet_records(rows)
    except DataError as e:
        raise DataError(e.reason, source=path, line=e.line, field=e.field) from e
    if len(records) < len(rows):  # never a silent loss: say how many rows the one-word filter dropped
        print(f"{path}: skipped {len(rows) - len(records)} of {len(rows)} ReMoDetect rows whose llm or human text "
              "has at most one word", file=sys.stderr)
    return records


def as_rm_records(records: list[Any], cfg: RewardTrainConfig, source: str, say: Any = print) -> list[Any]:
    """Check the records' kind; for pairwise objectives, ranked lists become every pair with different scores
    (BT's listwise generalisation, spec §7.1: the mean over valid pairs; ties are excluded and counted)."""
    from alignkit.data.convert import listwise_to_pairwise

    want = {"scored": ScoredExample, "listwise": ListwiseExample}.get(cfg.data_kind, PairwiseExample)
    if cfg.data_kind == "pairwise" and records and all(isinstance(r, ListwiseExample) for r in records):
        pairs, stats = listwise_to_pairwise(records, "all-pairs")
        say(stats.summary())
        return pairs
    wrong = next((r for r in records if not isinstance(r, want)), None)
    if wrong is not None:
        extra = " or ranked lists" if cfg.data_kind == "pairwise" else ""
        raise DataError(f"objective {cfg.objective} trains on {cfg.data_kind} records{extra}, got "
                        f"{type(wrong).__name__}", source=source)
    return records
