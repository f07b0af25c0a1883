"""Convert between data kinds. Every converter returns `(records, ConvertStats)`; nothing is dropped silently.

- `listwise_to_pairwise(records, mode)`: ranked lists -> preference pairs, chosen = the higher score.
  `all-pairs` makes every pair (i, j) with different scores (K(K-1)/2 pairs per list at most);
  `best-vs-worst` makes one pair, the first top-scored item against the first bottom-scored item;
  `adjacent` sorts by score (stable, descending) and pairs neighbours (K-1 pairs at most).
  Pairs with equal scores are ties and are skipped and counted, as are pairs whose texts are identical.
- `scored_to_listwise(records, attribute=... | weights=...)`: per-attribute scored completions grouped by prompt
  into ranked lists; the list score is one attribute or a weighted sum of attributes. Groups smaller than
  `min_size` and records lacking the attribute are skipped and counted; repeated texts keep their first score.
- `pairwise_to_unpaired(records)`: each pair -> chosen with `label=True` and rejected with `label=False`
  (as TRL's `unpair_preference_dataset`).
- `pairwise_to_listwise(records, score="wins")`: pairs grouped by prompt; each distinct completion scores its
  number of wins (`wins`) or wins / comparisons (`win_rate`). Margins are not used. A completion that never
  wins scores 0; with cycles (A>B, B>A) the scores tie.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from alignkit.data.records import (
    JudgedExample,
    ListwiseExample,
    PairwiseExample,
    Prompt,
    Record,
    ScoredExample,
    UnpairedExample,
)
from alignkit.errors import ConfigError, DataError

PairMode = Literal["all-pairs", "best-vs-worst", "adjacent"]
PAIR_MODES = ("all-pairs", "best-vs-worst", "adjacent")


@dataclass
class ConvertStats:
    """What a conversion did: records in and out, and every skip counted by reason."""

    conversion: str
    inputs: int = 0
    outputs: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        text = f"{self.conversion}: {self.inputs} records in, {self.outputs} out"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return text


def prompt_key(prompt: Prompt) -> str:
    """A hashable identity for grouping records by prompt (strings and chats never collide)."""
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def common_metadata(metadatas: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata entries every member of a group shares with equal values (a group's own provenance)."""
    if not metadatas:
        return {}
    first, *rest = metadatas
    return {k: v for k, v in first.items() if all(k in m and m[k] == v for m in rest)}


def _require(records: Iterable[Record], cls: type | tuple[type, ...], conversion: str) -> Iterable[Any]:
    for i, record in enumerate(records):
        if not isinstance(record, cls):
            names = cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls)
            raise DataError(f"{conversion} needs {names} records; record {i} is {type(record).__name__}")
        yield record


def listwise_to_pairwise(records: Iterable[ListwiseExample], mode: PairMode = "all-pairs",
                         with_margin: bool = False) -> tuple[list[PairwiseExample], ConvertStats]:
    """Ranked lists -> pairs (modes in the module docstring). `with_margin` sets `margin` to the score gap.
    Each pair's metadata keeps the list's metadata plus `chosen_score` and `rejected_score`."""
    if mode not in PAIR_MODES:
        raise ConfigError(f"mode must be one of {PAIR_MODES}, got {mode!r}")
    stats = ConvertStats(f"listwise -> pairwise ({mode})")
    out: list[PairwiseExample] = []
    for record in _require(records, ListwiseExample, "listwise_to_pairwise"):
        stats.inputs += 1
        items = list(zip(record.completions, record.scores, strict=True))
        if mode == "all-pairs":
            candidates = [(items[i], items[j]) for i in range(len(items)) for j in range(i + 1, len(items))]
        elif mode == "best-vs-worst":
            best = max(items, key=lambda item: item[1])
            worst = min(items, key=lambda item: item[1])
            candidates = [(best, worst)]
        else:
            ranked = sorted(items, key=lambda item: -item[1])
            candidates = list(zip(ranked, ranked[1:], strict=False))
        made = 0
        for (text_a, score_a), (text_b, score_b) in candidates:
            if score_a == score_b:
                stats.skipped["ties"] += 1
                continue
            (chosen, s_c), (rejected, s_r) = sorted([(text_a, score_a), (text_b, score_b)], key=lambda t: -t[1])
            if chosen == rejected:
                stats.skipped["identical texts with different scores"] += 1
                continue
            metadata = {**record.metadata, "chosen_score": s_c, "rejected_score": s_r}
            out.append(PairwiseExample(record.prompt, chosen, rejected, s_c - s_r if with_margin else None,
                                       metadata))
            made += 1
        if made == 0:
            stats.skipped["lists that gave no pair"] += 1
    stats.outputs = len(out)
    return out, stats


def scored_to_listwise(records: Iterable[ScoredExample | JudgedExample], attribute: str | None = None,
                       weights: dict[str, float] | None = None, min_size: int = 2
                       ) -> tuple[list[ListwiseExample], ConvertStats]:
    """Scored completions grouped by prompt (first-appearance order) into ranked lists.

    The score is `attributes[attribute]`, or `sum(w * attributes[name])` over `weights`; with neither, the one
    attribute every record has (an error if that is ambiguous). Judged records use their `score`.
    """
    if attribute is not None and weights is not None:
        raise ConfigError("give attribute or weights, not both")
    if min_size < 2:
        raise ConfigError(f"min_size must be at least 2, got {min_size}")
    items = list(_require(records, (ScoredExample, JudgedExample), "scored_to_listwise"))
    if attribute is None and weights is None:
        names = {name for r in items if isinstance(r, ScoredExample) for name in r.attributes}
        if len(names) > 1:
            raise ConfigError(f"records have several attributes {sorted(names)}; choose one with attribute= "
                              "(--attribute) or combine them with weights= (--weights)")
        attribute = next(iter(names), "score")
    label = attribute if weights is None else "+".join(f"{w:g}*{k}" for k, w in weights.items())
    stats = ConvertStats(f"scored -> listwise ({label})")

    def score_of(record: ScoredExample | JudgedExample) -> float | None:
        if isinstance(record, JudgedExample):
            return record.score
        if weights is not None:
            if any(name not in record.attributes for name in weights):
                return None
            return sum(w * record.attributes[name] for name, w in weights.items())
        return record.attributes.get(attribute)  # type: ignore[arg-type]

    groups: dict[str, tuple[Prompt, dict[str, float], list[dict[str, Any]]]] = {}
    for record in items:
        stats.inputs += 1
        score = score_of(record)
        if score is None:
            stats.skipped[f"records without {label}"] += 1
            continue
        prompt, scored, metadatas = groups.setdefault(prompt_key(record.prompt), (record.prompt, {}, []))
        if record.completion in scored:
            stats.skipped["repeated completions"] += 1
            continue
        scored[record.completion] = float(score)
        metadatas.append(record.metadata)
    out = []
    for prompt, scored, metadatas in groups.values():
        if len(scored) < min_size:
            stats.skipped[f"prompts with fewer than {min_size} completions"] += 1
            continue
        out.append(ListwiseExample(prompt, list(scored), list(scored.values()), common_metadata(metadatas)))
    stats.outputs = len(out)
    return out, stats


def pairwise_to_unpaired(records: Iterable[PairwiseExample]) -> tuple[list[UnpairedExample], ConvertStats]:
    """Each pair -> (chosen, True) and (rejected, False), metadata copied to both."""
    stats = ConvertStats("pairwise -> unpaired")
    out: list[UnpairedExample] = []
    for record in _require(records, PairwiseExample, "pairwise_to_unpaired"):
        stats.inputs += 1
        out.append(UnpairedExample(record.prompt, record.chosen, True, dict(record.metadata)))
        out.append(UnpairedExample(record.prompt, record.rejected, False, dict(record.metadata)))
    stats.outputs = len(out)
    return out, stats


def pairwise_to_listwise(records: Iterable[PairwiseExample], score: Literal["wins", "win_rate"] = "wins",
                         min_size: int = 2) -> tuple[list[ListwiseExample], ConvertStats]:
    """Pairs grouped by prompt into lists of distinct completions scored by wins or win rate (see module doc)."""
    if score not in ("wins", "win_rate"):
        raise ConfigError(f"score must be 'wins' or 'win_rate', got {score!r}")
    stats = ConvertStats(f"pairwise -> listwise ({score})")
    groups: dict[str, tuple[Prompt, Counter, Counter, list[dict[str, Any]]]] = {}
    for record in _require(records, PairwiseExample, "pairwise_to_listwise"):
        stats.inputs += 1
        _, wins, seen, metadatas = groups.setdefault(prompt_key(record.prompt),
                                                     (record.prompt, Counter(), Counter(), []))
        wins[record.chosen] += 1
        wins[record.rejected] += 0  # registers the text so first-appearance order holds
        seen[record.chosen] += 1
        seen[record.rejected] += 1
        metadatas.append(record.metadata)
    out = []
    for prompt, wins, seen, metadatas in groups.values():
        if len(wins) < min_size:
            stats.skipped[f"prompts with fewer than {min_size} completions"] += 1
            continue
        texts = list(wins)
        values = [float(wins[t]) if score == "wins" else wins[t] / seen[t] for t in texts]
        out.append(ListwiseExample(prompt, texts, values, common_metadata(metadatas)))
    stats.outputs = len(out)
    return out, stats


# (from kind, to kind) -> steps; chains compose the direct converters.
def _listwise_to_unpaired(records: Iterable[ListwiseExample], mode: PairMode = "all-pairs", **_: Any
                          ) -> tuple[list[UnpairedExample], ConvertStats]:
    pairs, first = listwise_to_pairwise(records, mode)
    out, second = pairwise_to_unpaired(pairs)
    return out, _chain(first, second)


def _scored_to_pairwise(records: Iterable[ScoredExample], mode: PairMode = "all-pairs", **kw: Any
                        ) -> tuple[list[PairwiseExample], ConvertStats]:
    lists, first = scored_to_listwise(records, kw.get("attribute"), kw.get("weights"))
    out, second = listwise_to_pairwise(lists, mode, kw.get("with_margin", False))
    return out, _chain(first, second)


def _chain(first: ConvertStats, second: ConvertStats) -> ConvertStats:
    stats = ConvertStats(f"{first.conversion}, then {second.conversion}", first.inputs, second.outputs)
    stats.skipped = first.skipped + second.skipped
    return stats


CONVERSIONS: dict[tuple[str, str], Callable[..., tuple[list[Any], ConvertStats]]] = {
    ("listwise", "pairwise"): lambda r, **kw: listwise_to_pairwise(r, kw.get("mode") or "all-pairs",
                                                                    kw.get("with_margin", False)),
    ("listwise", "unpaired"): lambda r, **kw: _listwise_to_unpaired(r, kw.get("mode") or "all-pairs"),
    ("scored", "listwise"): lambda r, **kw: scored_to_listwise(r, kw.get("attribute"), kw.get("weights")),
    ("judged", "listwise"): lambda r, **kw: scored_to_listwise(r),
    ("scored", "pairwise"): lambda r, **kw: _scored_to_pairwise(r, kw.get("mode") or "all-pairs", **kw),
    ("pairwise", "unpaired"): lambda r, **kw: pairwise_to_unpaired(r),
    ("pairwise", "listwise"): lambda r, **kw: pairwise_to_listwise(r, kw.get("score") or "wins"),
}


def convert(records: list[Record], source_kind: str, target_kind: str, **options: Any
            ) -> tuple[list[Record], ConvertStats]:
    """Convert `records` of `source_kind` to `target_kind` with the options of the step(s) involved
    (`mode`, `with_margin`, `attribute`, `weights`, `score`)."""
    step = CONVERSIONS.get((source_kind, target_kind))
    if step is None:
        known = ", ".join(f"{a}->{b}" for a, b in CONVERSIONS)
        raise ConfigError(f"no conversion from {source_kind} to {target_kind}; available: {known}")
    return step(records, **options)
