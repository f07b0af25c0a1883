"""Early rejection against verifiable constraints: is a partial answer already doomed, whatever follows?

Rejection-sampling data (RFT, `alignkit.pipelines.selfdata`) keeps only samples that satisfy *every* constraint
of their prompt. Several IFEval checks fail for good at the first offending character, so a sample that has
written one cannot become a demonstration: stopping it there frees its row for a waiting prompt (the sampler's
continuous batching) and leaves the selected data exactly as it would have been (the samples that pass are never
stopped, and each row draws from its own random stream). This is the sound special case of the early rejection
that issue 18 asks for: the verdict on a prefix is a proof about every completion, not a partial-reward guess
(`alignkit.decode.spec_reject` is the guessing kind, for learned rewards).

Rules, for the strict checks of if-verifiable's IFEval checkers (the ones `alignkit.rewards.verifiers` runs):

| id | doomed once the partial text | why no continuation passes |
|---|---|---|
| `change_case:english_lowercase` | holds an uppercase letter | `value.islower()` is then False for good |
| `change_case:english_capital` | holds a lowercase letter | `value.isupper()` is then False for good |
| `punctuation:no_comma` | holds a comma | `re.search(",")` finds it in any extension |
| `keywords:forbidden_words` | holds a forbidden word followed by another character | both `\\b` of the match are then fixed |
| `startend:quotation` | starts (after whitespace) with anything but `"` | `value.strip()[0]` is that character |
| `combination:repeat_prompt` | (stripped, lower-cased) leaves the prompt to repeat | `startswith` cannot recover |
| `length_constraints:number_words`, relation `less than` | has ≥ N words | the `\\w+` count never decreases |
| `keywords:letter_frequency`, relation `less than` | has ≥ N of the letter | the count never decreases |

Every other constraint (and every loose variant) is left to the final check. The prefix is the decoded text of
the tokens so far; decoding a token prefix gives a prefix of the final text up to an unfinished UTF-8 sequence at
its end (a replacement character, which none of the rules above reads as an offence).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Doomed = Callable[[str], bool]


def _lowercase(kw: dict[str, Any], prompt: str) -> Doomed:
    return lambda text: any(ch.isupper() for ch in text)


def _capital(kw: dict[str, Any], prompt: str) -> Doomed:
    return lambda text: any(ch.islower() for ch in text)


def _no_comma(kw: dict[str, Any], prompt: str) -> Doomed:
    return lambda text: "," in text


def _forbidden(kw: dict[str, Any], prompt: str) -> Doomed:
    # the checker's own pattern (the word is not escaped there either), and one more character after it, so the
    # closing \b is decided by a character that is already written
    patterns = [re.compile(r"\b" + w + r"\b(?=.)", flags=re.IGNORECASE | re.DOTALL)
                for w in kw.get("forbidden_words") or []]
    return lambda text: any(p.search(text) for p in patterns)


def _quotation(kw: dict[str, Any], prompt: str) -> Doomed:
    def doomed(text: str) -> bool:
        head = text.lstrip()
        return bool(head) and head[0] != '"'

    return doomed


def _repeat_prompt(kw: dict[str, Any], prompt: str) -> Doomed:
    target = str(kw.get("prompt_to_repeat") or "").strip().lower()

    def doomed(text: str) -> bool:
        head = text.lstrip().lower()
        k = min(len(head), len(target))
        return head[:k] != target[:k]

    return doomed


def _less_than(kw: dict[str, Any], relation_key: str) -> bool:
    return kw.get(relation_key) == "less than"


def _number_words(kw: dict[str, Any], prompt: str) -> Doomed | None:
    if not _less_than(kw, "relation") or kw.get("num_words") is None:
        return None
    from alignkit.rewards.verifiers import install_offline_nltk

    install_offline_nltk()
    from if_verifiable.ifeval import instructions_util

    limit = int(kw["num_words"])
    return lambda text: instructions_util.count_words(text) >= limit


def _letter_frequency(kw: dict[str, Any], prompt: str) -> Doomed | None:
    if not _less_than(kw, "let_relation") or kw.get("letter") is None or kw.get("let_frequency") is None:
        return None
    letter, limit = str(kw["letter"]).strip().lower(), int(kw["let_frequency"])
    return lambda text: text.lower().count(letter) >= limit


RULES: dict[str, Callable[[dict[str, Any], str], Doomed | None]] = {
    "change_case:english_lowercase": _lowercase,
    "change_case:english_capital": _capital,
    "punctuation:no_comma": _no_comma,
    "keywords:forbidden_words": _forbidden,
    "startend:quotation": _quotation,
    "combination:repeat_prompt": _repeat_prompt,
    "length_constraints:number_words": _number_words,
    "keywords:letter_frequency": _letter_frequency,
}


def doomed_check(constraints: Sequence[Any], prompt: str = "") -> Doomed | None:
    """A function of the partial answer that is True once some constraint fails whatever follows; None when no
    constraint of the list can be decided early. `constraints`: `{"id", "kwargs"}` dicts or `Constraint`s."""
    checks = []
    for c in constraints:
        cid = c["id"] if isinstance(c, dict) else c.id
        kwargs = dict((c.get("kwargs") if isinstance(c, dict) else c.kwargs) or {})
        rule = RULES.get(cid)
        check = rule({k: v for k, v in kwargs.items() if v is not None}, prompt) if rule else None
        if check is not None:
            checks.append(check)
    if not checks:
        return None
    return lambda text: any(check(text) for check in checks)
