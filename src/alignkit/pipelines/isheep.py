"""I-SHEEP pieces (Liang et al., arXiv 2408.08072; code multimodal-art-projection/I-SHEEP `seed_ppl/`): the
self-assessment score parser, the both-scores threshold filter, ROUGE-L dedup of synthesized instructions and the
rule filters, as pure functions. Spec: ../shared/spec/wave2_selfalign_merge.md §1.

The round that uses them is `pipelines.isheep_round`; the driver is `alignkit loop` (`pipelines.loop`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_LEAD = re.compile(r"^[\W_]+")
_NUM = re.compile(r"^(\d+(?:\.\d+)?)")


def parse_score(text: str) -> int:
    """`extract_number_from_eval`: strip leading whitespace/non-word characters; a number at the start (or at the
    start of the part before `||`) is rounded half-to-even (Python `round`); only 1..10 count, else −1."""
    for part in (text, text.split("||", 1)[0]):
        m = _NUM.match(_LEAD.sub("", part))
        if m:
            value = round(float(m.group(1)))
            return value if 1 <= value <= 10 else -1
    return -1


def keep_pair(quality: float, following: float, threshold: float = 8) -> bool:
    """Kept iff both scores are strictly above the threshold (C = 8: both ≥ 9); unparsed (−1) never passes."""
    return quality > threshold and following > threshold


def _rouge_tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def rouge_l_f1(a: str, b: str) -> float:
    """ROUGE-L F1 on whitespace tokens of lower-cased alphanumerics (rouge_score's default tokenizer)."""
    x, y = _rouge_tokens(a), _rouge_tokens(b)
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for tx in x:
        cur = [0]
        for j, ty in enumerate(y):
            cur.append(prev[j] + 1 if tx == ty else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(x), lcs / len(y)
    return 2 * p * r / (p + r)


def dedup(candidates: Sequence[str], seeds: Sequence[str], max_similarity: float = 0.7
          ) -> list[tuple[str, float]]:
    """Keep an instruction iff its max ROUGE-L F1 against the seeds and the instructions kept so far (this
    round) is ≤ `max_similarity`; returns (instruction, mean similarity) in order (order-dependent, as the code)."""
    kept: list[tuple[str, float]] = []
    for c in candidates:
        pool = list(seeds) + [k for k, _ in kept]
        sims = [rouge_l_f1(c, s) for s in pool]
        if sims and max(sims) > max_similarity:
            continue
        kept.append((c, sum(sims) / len(sims) if sims else 0.0))
    return kept


_MEDIA = re.compile(r"\b(images?|graphs?|pictures?|files?|maps?|draw|plot|go to|video|audio|music|flowchart|"
                    r"diagram)\b", re.I)
_URL = re.compile(r"https?://|www\.", re.I)


def instruction_drop_reason(instruction: str, input_text: str = "") -> str | None:
    """Step 1.3's filters on a synthesized (instruction, input); the reason, or None to keep."""
    n = len(instruction.split())
    if n <= 3 or n > 150:
        return "length"
    if _MEDIA.search(instruction):
        return "media_word"
    if not instruction[:1].isascii() or re.match(r"^[^\w\s]", instruction):
        return "bad_start"
    if re.search(r"no ?input", input_text, re.I):
        return "noinput"
    if _URL.search(instruction) or _URL.search(input_text) or re.search(r"(Instruction|Input):", instruction
                                                                          + input_text):
        return "url_or_marker"
    return None


Rule = Callable[[str, str, str], bool]  # (instruction, input, output) -> drop?

OUTPUT_RULES: list[tuple[str, Rule, bool]] = [  # (name, rule, over-broad: left out when strict=False)
    ("role_marker", lambda i, x, o: bool(re.search(r"(?im)^\s*(assistant|system|human|question|output|user)\s*(:|$)",
                                                  o)), False),
    ("answer_choices", lambda i, x, o: "Answer Choices:" in o or bool(re.search(r"no ?input", o, re.I)), False),
    ("choice_letters", lambda i, x, o: bool(re.search(r"\b[A-Ea-e]\.|\([A-Ea-e]\)", o)), True),  # fires on "e.g."
    ("cjk", lambda i, x, o: bool(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", o)), False),
    ("continues_dialogue", lambda i, x, o: "do you" in o.lower() or bool(re.search(r"(?im)^\s*can you", o))
     or bool(re.search(r"\n\s*\n[^\n]{0,99}\?\s*$", o)), False),
    ("instruction_noinput", lambda i, x, o: bool(re.search(r"no ?input", i + x, re.I)), False),
    ("instruction_none", lambda i, x, o: "none" in (i + x).lower(), True),  # also catches "nonetheless"
    ("placeholder", lambda i, x, o: bool(re.search(r"<[^<>]+>", i + x)), False),
    ("input_in_instruction", lambda i, x, o: bool(x.strip()) and x.strip() in i, False),
    ("empty_output", lambda i, x, o: not o.strip(), False),
]


@dataclass
class RuleFilter:
    """The step-3 rule filter as a named, switchable list with per-rule drop counts; `strict=False` leaves out
    the two over-broad rules (choice letters, the "none" substring) [design]."""

    strict: bool = True
    disabled: set[str] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)

    def check(self, instruction: str, input_text: str, output: str) -> tuple[str, str | None]:
        """(output with a leading "答案:" stripped, the first rule that drops it or None)."""
        output = re.sub(r"^\s*答案[:：]\s*", "", output)
        for name, rule, broad in OUTPUT_RULES:
            if name in self.disabled or (broad and not self.strict):
                continue
            if rule(instruction, input_text, output):
                self.counts[name] += 1
                return output, name
        return output, None


def select_training_pairs(rows: Sequence[dict[str, Any]], threshold: int = 8) -> tuple[list[dict[str, Any]], float]:
    """Rows with `quality_score` / `following_score` → the kept rows and the keep rate."""
    kept = [r for r in rows if keep_pair(int(r["quality_score"]), int(r["following_score"]), threshold)]
    return kept, (len(kept) / len(rows) if rows else 0.0)
