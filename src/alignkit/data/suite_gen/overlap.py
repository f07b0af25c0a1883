"""Proof that two suite splits are disjoint: base tasks, topics, prompts, templates, and near-duplicate text.

`overlap_report(train, test)` counts what the splits share; `check_disjoint` raises a DataError naming the first
shared items. Near duplicates are found on normalised text (lowercase, digits -> 0, punctuation dropped) by the
Jaccard similarity of word 3-gram sets, computed for all train x test pairs as one sparse matrix product
(scipy), so a test prompt that differs from a train prompt only in a number or a comma is caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from alignkit.data.suite_gen.wording import template_text
from alignkit.errors import DataError

NEAR_DUPLICATE_JACCARD = 0.5
SHINGLE = 3


def normalize(text: str) -> str:
    """Lowercase, every digit run -> "0", anything but letters and digits -> one space."""
    text = re.sub(r"\d+", "0", text.lower())
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def shingles(text: str, n: int = SHINGLE) -> set[str]:
    """The word n-grams of the normalised text (the whole text when it is shorter than n words)."""
    words = normalize(text).split()
    if len(words) <= n:
        return {" ".join(words)}
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def _incidence(sets: Sequence[set[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    rows, cols = [], []
    for i, s in enumerate(sets):
        for g in s:
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(sets), len(vocab)))


def max_jaccard(texts_a: Sequence[str], texts_b: Sequence[str]) -> tuple[float, int, int]:
    """The largest 3-gram Jaccard similarity over all pairs (a, b), and the indices of that pair."""
    if not texts_a or not texts_b:
        return 0.0, -1, -1
    sa, sb = [shingles(t) for t in texts_a], [shingles(t) for t in texts_b]
    vocab: dict[str, int] = {}
    ma, mb = _incidence(sa, vocab), _incidence(sb, vocab)
    ma.resize((ma.shape[0], len(vocab)))  # the vocabulary grew while building mb
    inter = (mb @ ma.T).tocoo()  # |b ∩ a| for every pair sharing a shingle; other pairs have Jaccard 0
    if inter.nnz == 0:
        return 0.0, -1, -1
    size_a, size_b = np.array([len(s) for s in sa]), np.array([len(s) for s in sb])
    jac = inter.data / (size_b[inter.row] + size_a[inter.col] - inter.data)
    k = int(np.argmax(jac))
    return float(jac[k]), int(inter.col[k]), int(inter.row[k])


def _templates(records: Iterable[dict[str, Any]]) -> set[str]:
    return {t for r in records for t in r.get("templates", [])}


def overlap_report(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What two splits share: counts per kind of overlap, examples, and the closest train/test prompt pair."""
    def shared(key: Any) -> list[Any]:
        return sorted({key(r) for r in train} & {key(r) for r in test})

    t_train, t_test = _templates(train), _templates(test)
    texts = {template_text(t) for t in t_train} & {template_text(t) for t in t_test}
    jac, i, j = max_jaccard([r["prompt"] for r in train], [r["prompt"] for r in test])
    report = {
        "base_tasks": shared(lambda r: r["base_task"]),
        "topics": shared(lambda r: r.get("topic", r["base_task"])),
        "prompts": shared(lambda r: r["prompt"]),
        "normalized_prompts": shared(lambda r: normalize(r["prompt"])),
        "template_ids": sorted(t_train & t_test),
        "template_texts": sorted(texts),
        "max_jaccard": jac,
        "closest_pair": (train[i]["id"], test[j]["id"]) if i >= 0 else None,
    }
    report["near_duplicates"] = jac >= NEAR_DUPLICATE_JACCARD
    return report


def check_disjoint(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Raise a DataError if the splits share a base task, topic, prompt (exact or normalised), template id or
    template text, or hold a near-duplicate pair (3-gram Jaccard >= NEAR_DUPLICATE_JACCARD); else the report."""
    report = overlap_report(train, test)
    problems = [f"{k}: {len(report[k])} shared, e.g. {report[k][:2]}"
                for k in ("base_tasks", "topics", "prompts", "normalized_prompts", "template_ids", "template_texts")
                if report[k]]
    if report["near_duplicates"]:
        problems.append(f"near-duplicate prompts {report['closest_pair']} (Jaccard {report['max_jaccard']:.2f})")
    if problems:
        raise DataError("suite splits overlap: " + "; ".join(problems))
    return report
