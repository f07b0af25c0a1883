"""Labelling tasks: build one, serve its items in a random (recorded) order, take answers, measure agreement.

A task compares K ≥ 2 completions of the same prompt. It is built either from two or more runs' samples
(`task_from_runs`: prompts every run answered; prompts whose completions are all the same are left out and
counted), or from a prompts file and a model (`task_from_prompts`): then an item's K completions are sampled the
first time an annotator reaches it (`fill_item`), seeded by the task's seed and the item, and stored, so every
annotator sees the same ones.

The order in which an annotator sees an item's completions is a seeded shuffle of (task seed, annotator, item):
the same on a reload or a restart, different between annotators (so position bias averages out), and recorded
with the answer. Answers are the letter of the best completion, `tie`, `both_bad` or `skip`; the canonical choice
(the completion's index in the item) is what exports and agreement read.

Agreement (Cohen 1960, "A coefficient of agreement for nominal scales"): for two annotators over the items both
answered (skips left out), raw agreement p_o is the fraction of identical canonical choices and
κ = (p_o − p_e)/(1 − p_e), with p_e = Σ_c p_1(c)·p_2(c) from each annotator's own choice frequencies.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import DataError
from alignkit.evaluate.runs import Run
from alignkit.studio.store import ALL_BAD, SKIP, SPECIAL_CHOICES, TIE, Item, Label, TaskStore

LETTERS = string.ascii_uppercase
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TASK_SUFFIX = ".sqlite"


def check_name(name: str, what: str = "task name") -> str:
    """Task and annotator names: letters, digits, `.`, `_`, `-` (they become file names and URL parts)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataError(f"{what} {name!r}: use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or "
                        "digit)")
    return name


def task_path(store_dir: str | Path, name: str) -> Path:
    return Path(store_dir) / f"{check_name(name)}{TASK_SUFFIX}"


def list_tasks(store_dir: str | Path) -> list[str]:
    d = Path(store_dir)
    return sorted(p.name[: -len(TASK_SUFFIX)] for p in d.glob(f"*{TASK_SUFFIX}")) if d.is_dir() else []


def task_from_runs(path: str | Path, runs: Sequence[Run], *, name: str | None = None, seed: int = 0,
                   limit: int | None = None) -> tuple[TaskStore, dict[str, int]]:
    """A task comparing the runs' completions of the prompts they all answered; returns it and counts
    (`items`, `identical` left out, `missing` prompts some run lacks)."""
    from alignkit.studio.samples import join_samples

    if len(runs) < 2:
        raise DataError("a labelling task compares two or more runs; pick at least two")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise DataError(f"the same run is picked twice: {names}")
    rows = join_samples(runs, [{} for _ in runs])
    items, counts = [], Counter()
    for row in rows:
        if any(c is None for c in row.cells):
            counts["missing"] += 1
            continue
        if not row.changed:
            counts["identical"] += 1
            continue
        comps = [{"text": c.completion, "source": c.run, "reward": c.reward, "finish_reason": c.finish_reason}
                 for c in row.cells if c is not None]
        items.append((row.key, row.prompt, comps, {}))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise DataError(f"runs {', '.join(names)} share no prompt with different completions "
                        f"({counts['identical']} identical, {counts['missing']} not in every run)")
    meta = {"name": name or Path(path).stem, "source": "runs", "runs": names, "k": len(runs), "seed": seed,
            "created": time.time()}
    counts["items"] = len(items)
    return TaskStore.create(path, meta, items), dict(counts)


def task_from_prompts(path: str | Path, prompts: str, model: str, *, k: int = 2, name: str | None = None,
                      seed: int = 0, limit: int | None = None, max_new_tokens: int = 128,
                      temperature: float = 1.0) -> TaskStore:
    """A task whose completions are sampled from `model` on demand, K per prompt of `prompts` (a JSONL file or
    `suite:test`)."""
    from alignkit.data.build.common import load_prompts

    if k < 2:
        raise DataError(f"k must be at least 2 (completions compared per prompt); got {k}")
    examples = load_prompts(prompts)[:limit]
    items = [(str(p.metadata.get("id", i)), p.prompt, [], {"constraints": [dict(c) for c in p.constraints]})
             for i, p in enumerate(examples)]
    meta = {"name": name or Path(path).stem, "source": "prompts", "prompts": prompts, "model": model, "k": k,
            "seed": seed, "max_new_tokens": max_new_tokens, "temperature": temperature, "created": time.time()}
    return TaskStore.create(path, meta, items)


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def fill_item(store: TaskStore, item: Item, sampler_for: Callable[[str], Any]) -> Item:
    """Sample the K completions of an on-demand item (a no-op when it has them)."""
    if item.completions:
        return item
    meta = store.meta()
    sampler = sampler_for(meta["model"])
    samples = sampler.sample([item.prompt], n=int(meta["k"]), max_new_tokens=int(meta["max_new_tokens"]),
                             temperature=float(meta["temperature"]), seed=_seed(meta["seed"], item.key))[0]
    comps = [{"text": s.text, "source": f"{meta['model']}#{j}", "finish_reason": s.finish_reason}
             for j, s in enumerate(samples)]
    try:
        store.set_completions(item.item_id, comps)
    except DataError:  # another annotator filled it first: theirs are the ones labelled
        pass
    return store.item(item.item_id)


def display_order(meta: dict[str, Any], annotator: str, item: Item) -> list[int]:
    """The seeded, per-annotator order of the item's completions: order[j] is the completion shown as letter j."""
    order = list(range(len(item.completions)))
    random.Random(_seed(meta.get("seed", 0), annotator, item.key)).shuffle(order)
    return order


def next_item(store: TaskStore, annotator: str) -> Item | None:
    """The first item (in task order) the annotator has not answered (a skip is an answer); None when done."""
    done = {lab.item_id for lab in store.labels(check_name(annotator, "annotator name"))}
    return next((it for it in store.items() if it.item_id not in done), None)


def answer(store: TaskStore, annotator: str, item_id: int, shown: str, critique: str = "") -> Label:
    """Record an answer: `shown` is the letter pressed (A, B, ...), `tie`, `both_bad` or `skip`."""
    check_name(annotator, "annotator name")
    item = store.item(item_id)
    if not item.completions:
        raise DataError(f"item {item_id} has no completions yet; open it first")
    order = display_order(store.meta(), annotator, item)
    s = shown.strip()
    if s.upper() in LETTERS[: len(order)] and len(s) == 1:
        shown_norm, choice = s.upper(), str(order[LETTERS.index(s.upper())])
    elif s.lower() in SPECIAL_CHOICES:
        shown_norm = choice = s.lower()
    else:
        raise DataError(f"answer {shown!r}: expected one of {', '.join(LETTERS[:len(order)])}, tie, both_bad, skip")
    if not isinstance(critique, str) or len(critique) > 20_000:
        raise DataError("critique: expected text of at most 20000 characters")
    label = Label(item_id, annotator, choice, shown_norm, order, critique.strip(), time.time())
    store.put_label(label)
    return label


@dataclass(frozen=True)
class Progress:
    annotator: str
    answered: int  # skips included
    skipped: int
    total: int


def progress(store: TaskStore) -> list[Progress]:
    total = len(store.items())
    per: dict[str, Counter] = {}
    for lab in store.labels():
        c = per.setdefault(lab.annotator, Counter())
        c["answered"] += 1
        c["skipped"] += lab.choice == SKIP
    return [Progress(a, c["answered"], c["skipped"], total) for a, c in sorted(per.items())]


@dataclass(frozen=True)
class Agreement:
    a: str
    b: str
    n: int  # items both answered (skips left out)
    raw: float
    kappa: float | None  # None when p_e = 1 (both always gave the same single answer)


def cohen_kappa(x: Sequence[str], y: Sequence[str]) -> tuple[float, float | None]:
    """(raw agreement, Cohen's κ) of two annotators' choices on the same items."""
    if len(x) != len(y) or not x:
        raise DataError("agreement needs the same, non-empty list of items for both annotators")
    n = len(x)
    po = sum(a == b for a, b in zip(x, y, strict=True)) / n
    cx, cy = Counter(x), Counter(y)
    pe = sum(cx[c] * cy[c] for c in cx) / (n * n)
    return po, (None if pe >= 1.0 else (po - pe) / (1.0 - pe))


def agreement(store: TaskStore) -> list[Agreement]:
    """Each pair of annotators over the items both answered."""
    by: dict[str, dict[int, str]] = {}
    for lab in store.labels():
        if lab.choice != SKIP:
            by.setdefault(lab.annotator, {})[lab.item_id] = lab.choice
    names = sorted(by)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(by[a]) & set(by[b]))
            if common:
                raw, kappa = cohen_kappa([by[a][k] for k in common], [by[b][k] for k in common])
                out.append(Agreement(a, b, len(common), raw, kappa))
    return out


__all__ = ["ALL_BAD", "TIE", "SKIP", "Agreement", "Progress", "agreement", "answer", "cohen_kappa", "display_order",
           "fill_item", "list_tasks", "next_item", "progress", "task_from_prompts", "task_from_runs", "task_path"]
