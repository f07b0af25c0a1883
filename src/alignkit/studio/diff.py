"""A word-level diff of two texts, for the sample browser: which words one run's completion changed.

Texts are split into words, each with the whitespace after it (so joining the pieces gives the texts back
exactly, and a run of changed words reads as one change rather than words interleaved with unchanged spaces), and
`difflib.SequenceMatcher` aligns the words (Ratcliff–Obershelp, junk heuristics off so repeated words still
align). The output is a list of `(op, text)` with op in `equal`, `delete` (only in A), `insert` (only in B).
"""

from __future__ import annotations

import difflib
import re

_TOKEN = re.compile(r"^\s+|\S+\s*")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """`[(op, text), ...]` turning `a` into `b`; "".join of equal+delete is a, of equal+insert is b."""
    ta, tb = tokens(a), tokens(b)
    sm = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    out: list[tuple[str, str]] = []

    def add(op: str, text: str) -> None:
        if not text:
            return
        if out and out[-1][0] == op:
            out[-1] = (op, out[-1][1] + text)
        else:
            out.append((op, text))

    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            add("equal", "".join(ta[i1:i2]))
        else:
            add("delete", "".join(ta[i1:i2]))
            add("insert", "".join(tb[j1:j2]))
    return out


def changed(a: str, b: str) -> bool:
    """Whether two completions differ in their words (whitespace-only changes do not count)."""
    return a.split() != b.split()
