"""Which tokens a correction changed: the RLHF-V token-diff rule and character spans → token weights.

Spec: ../shared/spec/wave2_feedback_safety.md §1.3 (RLHF-V, Yu et al. 2024, code `utils/diff_lib.py::get_diff_ids`).

Token-diff rule, for a = rejected (original) completion ids and b = chosen (corrected) completion ids:
1. `difflib.SequenceMatcher(None, a, b, autojunk=autojunk)` (difflib's default `autojunk=True` changes matching
   for sequences of 200 tokens or more; kept as the default to reproduce the released code);
2. matching blocks shorter than `min_match_size` (3) are discarded, so their tokens count as changed;
3. the gaps between kept blocks are paired (gap k of a with gap k of b); a gap pair is *modified* only when it is
   non-empty on both sides (a replacement). Pure insertions and deletions keep weight 1 (the code's rule);
   `weight_pure_insertions=True` also weights them (the more intuitive reading of the paper);
4. C_l = the modified positions of a, C_w = those of b.
With character spans given instead, token t is changed iff its offset interval overlaps a span.

Pure functions of token ids / offsets: nothing here imports a model.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

Span = tuple[int, int]


def changed_token_sets(rejected_ids: Sequence[int], chosen_ids: Sequence[int], *, min_match_size: int = 3,
                       autojunk: bool = True, weight_pure_insertions: bool = False) -> tuple[set[int], set[int]]:
    """(C_w, C_l): positions changed in the chosen and in the rejected completion (§1.3).

    Worked (spec §1.5): a = [5,6,7,8,9,10,11,12], b = [5,6,7,20,21,10,11,12,30] → C_l = {3,4}, C_w = {3,4};
    the appended 30 is a pure insertion and stays unweighted.
    """
    a, b = list(rejected_ids), list(chosen_ids)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=autojunk)
    kept = [m for m in matcher.get_matching_blocks() if m.size >= min_match_size]
    changed_a: set[int] = set()
    changed_b: set[int] = set()
    ia = ib = 0
    # The terminal (len(a), len(b), 0) block closes the last gap pair.
    for block in [*kept, difflib.Match(len(a), len(b), 0)]:
        gap_a, gap_b = range(ia, block.a), range(ib, block.b)
        if (len(gap_a) and len(gap_b)) or (weight_pure_insertions and (len(gap_a) or len(gap_b))):
            changed_a.update(gap_a)
            changed_b.update(gap_b)
        ia, ib = block.a + block.size, block.b + block.size
    return changed_b, changed_a


def weights_from_changed(n: int, changed: set[int], gamma: float) -> list[float]:
    """w_t = γ for t ∈ C, else 1 (§1.2 step 2), for a completion of n tokens."""
    return [gamma if t in changed else 1.0 for t in range(n)]


def tokens_in_spans(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> set[int]:
    """Token positions whose character interval [start, end) overlaps a span [s, e) (§1.3, spans given).

    Zero-width tokens (special tokens, offsets (0, 0)) never overlap."""
    out = set()
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        if any(start < e and s < end for s, e in spans):
            out.add(t)
    return out


def check_spans(value: object, text: str, field: str) -> list[Span]:
    """Validate `[[start, end], ...]` character spans against `text`; raises ValueError naming `field`."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field}: expected a list of [start, end] character offsets, got {type(value).__name__}")
    spans: list[Span] = []
    for i, span in enumerate(value):
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
            raise ValueError(f"{field}[{i}]: expected [start, end] integers, got {span!r}")
        s, e = int(span[0]), int(span[1])
        if not 0 <= s < e <= len(text):
            raise ValueError(f"{field}[{i}]: [{s}, {e}] is not a non-empty range inside the {len(text)}-character "
                             "completion")
        spans.append((s, e))
    return spans


def word_diff_spans(rejected: str, chosen: str, *, min_match_size: int = 1) -> tuple[list[Span], list[Span]]:
    """(chosen_spans, rejected_spans): character spans of the replaced words, by the same gap rule on word and
    whitespace pieces (a tokenizer-free view for builders and reports; training diffs the policy's own tokens).

    "There are three mugs" → "There are two mugs": chosen [(10, 13)], rejected [(10, 15)]."""
    pieces_l, pieces_w = _pieces(rejected), _pieces(chosen)
    cw, cl = changed_token_sets([p for p, _ in pieces_l], [p for p, _ in pieces_w], min_match_size=min_match_size,
                                autojunk=False)
    return _spans(pieces_w, cw), _spans(pieces_l, cl)


def _pieces(text: str) -> list[tuple[str, int]]:
    return [(m.group(), m.start()) for m in re.finditer(r"\w+|\s+|[^\w\s]", text)]


def _spans(pieces: list[tuple[str, int]], changed: set[int]) -> list[Span]:
    spans: list[Span] = []
    for i in sorted(changed):
        text, start = pieces[i]
        if text.isspace():  # a changed run is reported without its surrounding whitespace
            continue
        if spans and (i - 1 in changed or pieces[i - 1][0].isspace() and i - 2 in changed) and spans[-1][1] <= start:
            spans[-1] = (spans[-1][0], start + len(text))
        else:
            spans.append((start, start + len(text)))
    return spans
