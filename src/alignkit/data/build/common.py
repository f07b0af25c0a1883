"""Shared pieces of the preference-data builders: build items and their keys, sampling settings, reading prompt
sources, and turning a scored list of completions into listwise or pairwise records.

Every builder reads *items* (a prompt with its constraints/references, or a conversation), keyed by the record's
id or, failing that, a hash of its prompt; the key is what resume uses to skip finished work.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from alignkit.data.records import ListwiseExample, PairwiseExample, Prompt, PromptExample, Record
from alignkit.decode.sampler import Sample, Sampler
from alignkit.errors import ConfigError, DataError

FORMATS = ("pairwise", "listwise")
PAIR_MODES = ("best-vs-worst", "all")


@dataclass(frozen=True)
class BuildItem:
    """One unit of work: a key (for resume), the prompt, and the source record (constraints, references, turns)."""

    key: str
    prompt: Prompt
    source: PromptExample | dict[str, Any]

    @property
    def constraints(self) -> list[dict[str, Any]]:
        return list(getattr(self.source, "constraints", None) or [])

    @property
    def references(self) -> list[str]:
        return list(getattr(self.source, "references", None) or [])


@dataclass(frozen=True)
class SamplingSettings:
    """How the policy is sampled; recorded in every record's provenance."""

    n: int = 4
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n must be >= 1 (samples per prompt), got {self.n}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_hash(prompt: Prompt) -> str:
    """A stable key for a prompt without an id: sha256 of its canonical JSON (first 16 hex digits)."""
    return hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def item_key(source: PromptExample | dict[str, Any], prompt: Prompt) -> str:
    meta = getattr(source, "metadata", None) if not isinstance(source, dict) else source
    ident = (meta or {}).get("id") if isinstance(meta, dict) else None
    return f"id:{ident}" if ident not in (None, "") else f"sha:{prompt_hash(prompt)}"


def items_from_prompts(prompts: Sequence[PromptExample | str | list[dict[str, str]]]) -> list[BuildItem]:
    """Wrap prompts (PromptExamples, strings or chat lists) as build items."""
    items = []
    for i, p in enumerate(prompts):
        example = p if isinstance(p, PromptExample) else PromptExample(prompt=p)
        if not isinstance(example.prompt, (str, list)):
            raise DataError(f"prompt {i} is a {type(example.prompt).__name__}; expected a string or chat list")
        items.append(BuildItem(item_key(example, example.prompt), example.prompt, example))
    return items


def _ifeval_constraints(example: PromptExample) -> PromptExample:
    """Rows in IFEval's own layout (`instruction_id_list` + `kwargs`, kept in metadata by the reader) get
    `constraints` in alignkit's `{"id", "kwargs"}` form (None-valued kwargs dropped, as IFEval's scorer does)."""
    ids = example.metadata.get("instruction_id_list")
    if example.constraints or not ids:
        return example
    kwargs = example.metadata.get("kwargs") or [{} for _ in ids]
    constraints = [{"id": i, "kwargs": {k: v for k, v in (kw or {}).items() if v is not None}}
                   for i, kw in zip(ids, kwargs, strict=False)]
    meta = {k: v for k, v in example.metadata.items() if k not in ("instruction_id_list", "kwargs")}
    if "key" in meta and "id" not in meta:
        meta["id"] = meta["key"]
    return PromptExample(example.prompt, list(example.references), constraints, meta)


def load_prompts(spec: str, split: str | None = None) -> list[PromptExample]:
    """Prompts from any source `read_records` reads: `suite:train` / `suite:test` (the shipped constraint suite),
    a file (JSONL/JSON/Parquet/CSV/datasets directory), a cached hub dataset id, `split` as `--split`. Rows hold
    `prompt` and optionally `id`, `constraints` (or IFEval's `instruction_id_list` + `kwargs`), `references`."""
    from alignkit.data.io import read_records

    return [_ifeval_constraints(r) for r in read_records(spec, kind="prompt", split=split).records]


def sample_batch(sampler: Sampler, items: Sequence[BuildItem], settings: SamplingSettings,
                 reject: Sequence[Any] | None = None) -> list[list[Sample]]:
    """n samples for each item. The call seed is derived from the settings' seed and the items' keys, so a
    resumed build draws the same samples for the same batch. `reject`: per item, an early-rejection test for a
    sampler that `supports_reject` (ScoredSamplesBuilder)."""
    seed = int(hashlib.sha256((str(settings.seed) + "|" + "|".join(i.key for i in items)).encode())
               .hexdigest()[:12], 16)
    extra: dict[str, Any] = {"reject": reject} if reject is not None and any(r is not None for r in reject) else {}
    out = sampler.sample([i.prompt for i in items], n=settings.n, max_new_tokens=settings.max_new_tokens,
                         temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k, seed=seed,
                         **extra)
    if len(out) != len(items) or any(len(row) != settings.n for row in out):
        raise DataError(f"the sampler returned {[len(r) for r in out]} samples for {len(items)} prompts x "
                        f"n={settings.n}")
    return out


@dataclass
class ScoredList:
    """Completions of one prompt with their scores, ready to become listwise or pairwise records."""

    item: BuildItem
    completions: list[str]
    scores: list[float]
    extra: dict[str, Any] = field(default_factory=dict)


def check_format(fmt: str, pair_mode: str = "best-vs-worst") -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {fmt!r}")
    if pair_mode not in PAIR_MODES:
        raise ConfigError(f"pair mode must be one of {PAIR_MODES}, got {pair_mode!r}")


def records_from_scores(scored: ScoredList, fmt: str, metadata: dict[str, Any], pair_mode: str = "best-vs-worst",
                        min_margin: float = 0.0, keep_tied_lists: bool = False
                        ) -> tuple[list[Record], dict[str, int]]:
    """Listwise: one record with all completions and scores (a list whose scores are all equal carries no ranking
    signal and is skipped unless `keep_tied_lists`). Pairwise: best vs worst (or every ordered pair with a score
    gap); pairs whose margin is <= `min_margin` (ties) are skipped and counted. Returns (records, skip counts).

    Empty completions (a sample that ended at once) are left out first and counted (`empty_completions`); with
    fewer than two left there is nothing to compare (`too_few_completions`). Pairs of identical texts are skipped
    (`identical_pairs`). `chosen_index`/`rejected_index` in metadata refer to the original sample positions."""
    check_format(fmt, pair_mode)
    skips: Counter = Counter()
    keep = [i for i, c in enumerate(scored.completions) if c.strip()]
    if len(keep) < len(scored.completions):
        skips["empty_completions"] += len(scored.completions) - len(keep)
    if len(keep) < 2:
        skips["too_few_completions"] += 1
        return [], dict(skips)
    prompt = scored.item.prompt
    comps = [scored.completions[i] for i in keep]
    scores = [float(scored.scores[i]) for i in keep]
    meta = {**metadata, **scored.extra}
    if fmt == "listwise":
        if len(set(scores)) <= 1 and not keep_tied_lists:
            skips["all_tied"] += 1
            return [], dict(skips)
        if len(keep) < len(scored.completions):
            meta["sample_indices"] = keep
        return [ListwiseExample(prompt=prompt, completions=comps, scores=scores, metadata=meta)], dict(skips)
    candidates: list[tuple[int, int]] = []
    if pair_mode == "best-vs-worst":
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        worst = min(range(len(scores)), key=lambda i: (scores[i], i))
        if scores[best] - scores[worst] > min_margin:
            candidates.append((best, worst))
        else:
            skips["tied_pairs"] += 1
    else:
        for i in range(len(scores)):
            for j in range(len(scores)):
                if scores[i] - scores[j] > min_margin:
                    candidates.append((i, j))
                elif i < j and abs(scores[i] - scores[j]) <= min_margin:
                    skips["tied_pairs"] += 1
    records: list[Record] = []
    for i, j in candidates:
        if comps[i] == comps[j]:
            skips["identical_pairs"] += 1
            continue
        records.append(PairwiseExample(prompt=prompt, chosen=comps[i], rejected=comps[j],
                                       margin=scores[i] - scores[j],
                                       metadata={**meta, "chosen_score": scores[i], "rejected_score": scores[j],
                                                 "chosen_index": keep[i], "rejected_index": keep[j]}))
    return records, dict(skips)


def drop_reason(records: list[Record], skips: dict[str, int]) -> str | None:
    """Why an item gave no records (None if it gave some); the reason is moved out of the finer skip counts."""
    if records:
        return None
    for reason in ("too_few_completions", "all_tied"):
        if skips.pop(reason, 0):
            return reason
    return "identical_pairs" if skips.get("identical_pairs") and not skips.get("tied_pairs") else "all_tied"
