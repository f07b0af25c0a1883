"""CycleAlign pieces (Hong et al., arXiv 2310.16271; no official code: spec ../shared/spec/wave2_selfalign_merge.md
§2, [paper]/[uncertain] throughout): the black-box ranking parser, the white-box belief ranking and the agreement
ranking (longest common subsequence, the spec's reading of "agreement" [uncertain]), as pure functions.

Training on the lists uses the existing `pro` listwise objective with scores = N − rank (objectives.md §3.2).
The round that uses them is `pipelines.cyclealign_round`; the driver is `alignkit loop` (`pipelines.loop`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def parse_ranking(text: str, n: int) -> list[int] | None:
    """A total order over responses 1..n written as `[2] > [1] > …`, `2 > 1 > …` or `Response 2, Response 1, …`
    → 0-based indices, best first; None unless it is a permutation of all n (duplicates or gaps are rejected)."""
    found = [int(x) for x in re.findall(r"\[?\b(?:Response\s*)?(\d+)\b\]?", text)]
    order = [x - 1 for x in found]
    if len(order) != n or sorted(order) != list(range(n)):
        return None
    return order


def belief_ranking(avg_logps: Sequence[float]) -> list[int]:
    """Indices by the white-box model's length-averaged log-prob A_θ, descending (stable for ties)."""
    return sorted(range(len(avg_logps)), key=lambda i: -avg_logps[i])


def agreement(judge: Sequence[int], belief: Sequence[int]) -> list[int]:
    """LCS of the two rankings as index sequences. Tie-break when several LCS exist: when backtracking, skip in
    the judge ranking first (deterministic)."""
    a, b = list(judge), list(belief)
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            L[i][j] = L[i + 1][j + 1] + 1 if a[i] == b[j] else max(L[i + 1][j], L[i][j + 1])
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            out.append(a[i])
            i, j = i + 1, j + 1
        elif L[i + 1][j] >= L[i][j + 1]:
            i += 1  # skip in the judge ranking first
        else:
            j += 1
    return out


def scores_from_ranking(order: Sequence[int]) -> list[float]:
    """Listwise `scores` from a best-first ranking: N − rank (higher is better), per response index."""
    n = len(order)
    scores = [0.0] * n
    for rank, idx in enumerate(order):
        scores[idx] = float(n - rank)
    return scores
