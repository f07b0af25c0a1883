"""A task's answers as training records that `alignkit train` reads directly (alignkit.data.records).

Votes: each item's answers (skips left out) are resolved by `votes="majority"` (the most frequent choice; an item
whose top choices tie is left out and counted as `disputed`) or `votes="each"` (every annotator's answer gives its
own records, so repeated labels weigh more). From the resolved choice:

* `pairwise`: the chosen completion against each other completion (K − 1 pairs); `tie` and `both_bad` give none
  (they carry no order). The TRL columns `prompt`, `chosen`, `rejected`.
* `unpaired`: the chosen completion with label true, the others false; `both_bad`: every completion false; `tie`
  gives none (equally good or equally bad is not known). KTO's columns `prompt`, `completion`, `label`.
* `judged` (CUT, Xu et al. 2023): with a critique, each completion it judges becomes
  `{prompt, completion, judgment: critique, score: 0}` (a negative judgment: the losers, or all under
  `both_bad`), and the chosen one `{judgment: "The annotator preferred this answer.", score: 10}`, a positive
  judgment (score ≥ the engine's `judged_positive_score`, 7). Items without a critique give none.
* `feedback`: the language-feedback record, one per critique: `{prompt, completion, feedback, preferred,
  annotator}` for each completion the critique is about (as in `judged`); a plain JSONL for feedback-learning
  recipes (no training kind reads it yet).

Every record's `metadata` names the task, the item's key, the completions' sources (runs) and the annotators.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignkit.data.records import JudgedExample, PairwiseExample, Record, UnpairedExample
from alignkit.errors import DataError
from alignkit.studio.store import ALL_BAD, SKIP, TIE, Item, Label, TaskStore

KINDS = ("pairwise", "unpaired", "judged", "feedback")
VOTES = ("majority", "each")
POSITIVE_JUDGMENT = "The annotator preferred this answer."


def _resolved(store: TaskStore, votes: str, counts: Counter) -> Iterator[tuple[Item, str, list[Label]]]:
    """(item, choice, the labels behind it) for each item with an answer."""
    if votes not in VOTES:
        raise DataError(f"votes must be one of {', '.join(VOTES)}; got {votes!r}")
    by_item: dict[int, list[Label]] = defaultdict(list)
    for lab in store.labels():
        if lab.choice != SKIP:
            by_item[lab.item_id].append(lab)
    for item in store.items():
        labels = by_item.get(item.item_id)
        if not labels:
            continue
        if votes == "each":
            for lab in labels:
                yield item, lab.choice, [lab]
            continue
        tally = Counter(lab.choice for lab in labels).most_common()
        if len(tally) > 1 and tally[0][1] == tally[1][1]:
            counts["disputed"] += 1
            continue
        yield item, tally[0][0], [lab for lab in labels if lab.choice == tally[0][0]]


def _meta(store_name: str, item: Item, labels: list[Label], **extra: Any) -> dict[str, Any]:
    return {"task": store_name, "item": item.key, "annotators": [lab.annotator for lab in labels], **extra}


def records(store: TaskStore, kind: str, votes: str = "majority") -> tuple[list[Record] | list[dict[str, Any]],
                                                                           dict[str, int]]:
    """The records of `kind` (rows for `feedback`) and counts (`items`, `records`, `disputed`, ...)."""
    if kind not in KINDS:
        raise DataError(f"export kind must be one of {', '.join(KINDS)}; got {kind!r}")
    name = str(store.meta().get("name", store.path.stem))
    counts: Counter = Counter()
    out: list[Any] = []
    for item, choice, labels in _resolved(store, votes, counts):
        counts["items"] += 1
        comps = item.completions
        src = [c.get("source") for c in comps]
        win = int(choice) if choice not in (TIE, ALL_BAD) else None
        if kind == "pairwise":
            if win is None:
                counts[f"no_pair_{choice}"] += 1
                continue
            for j, c in enumerate(comps):
                if j != win:
                    out.append(PairwiseExample(item.prompt, comps[win]["text"], c["text"], metadata=_meta(
                        name, item, labels, chosen_source=src[win], rejected_source=src[j])))
        elif kind == "unpaired":
            if choice == TIE:
                counts["no_label_tie"] += 1
                continue
            for j, c in enumerate(comps):
                out.append(UnpairedExample(item.prompt, c["text"], j == win,
                                           metadata=_meta(name, item, labels, source=src[j])))
        else:
            critiques = [(lab.annotator, lab.critique) for lab in labels if lab.critique]
            if not critiques or choice == TIE:
                counts["no_critique" if not critiques else "no_judgment_tie"] += 1
                continue
            for annotator, critique in critiques:
                for j, c in enumerate(comps):
                    preferred = j == win
                    if kind == "judged":
                        out.append(JudgedExample(item.prompt, c["text"], POSITIVE_JUDGMENT if preferred else critique,
                                                 10.0 if preferred else 0.0,
                                                 metadata=_meta(name, item, labels, source=src[j])))
                    elif not preferred:
                        out.append({"prompt": item.prompt, "completion": c["text"], "feedback": critique,
                                    "preferred": False, "annotator": annotator,
                                    "metadata": _meta(name, item, labels, source=src[j])})
    counts["records"] = len(out)
    return out, dict(counts)


def export_task(store: TaskStore, kind: str, output: str | Path, *, votes: str = "majority",
                overwrite: bool = False) -> dict[str, int]:
    """Write the task's `kind` records to `output` (JSONL); refuses to replace a file unless `overwrite`."""
    from alignkit.data.io import write_records

    out = Path(output)
    if not out.name.endswith(".jsonl"):
        raise DataError("records are written as JSON lines; name the file .jsonl", source=str(out))
    if out.exists() and not overwrite:
        raise DataError(f"{out} exists; pass --overwrite to replace it", source=str(out))
    recs, counts = records(store, kind, votes)
    if not recs:
        raise DataError(f"task {store.path.stem} has no answers that make {kind} records yet ({counts})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name.removesuffix('.jsonl')}.tmp.jsonl")  # written whole, then renamed
    if kind == "feedback":
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    else:
        write_records(tmp, recs)  # type: ignore[arg-type]
    tmp.replace(out)
    return counts


def export_text(store: TaskStore, kind: str, votes: str = "majority") -> str:
    """The export as one JSONL string (the app's download)."""
    from alignkit.data.parse import record_to_row

    recs, _ = records(store, kind, votes)
    rows = recs if kind == "feedback" else [record_to_row(r) for r in recs]  # type: ignore[arg-type]
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
