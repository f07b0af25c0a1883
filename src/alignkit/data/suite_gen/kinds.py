"""The constraint kinds of the suite: every IFEval instruction id the offline verifier checks, with kwarg samplers.

All 25 ids of `if_verifiable.ifeval.instructions_registry.INSTRUCTION_DICT` verify here without downloads (NLTK's
punkt data is replaced by `alignkit.rewards.verifiers.install_offline_nltk`; `language:response_language` uses
the installed `langdetect`). Kwargs stay inside the ranges IFEval draws from (`instructions.py`: e.g. 1-5 bullets,
1-4 highlights, 1-20 sentences, "less than"/"at least") but favour values a short answer from a 135M chat model
can meet: 1-4 bullets, 2-3 paragraphs, 20-150 words, short end phrases, European response languages.

`weight` is the relative chance a kind is drawn; kinds that a small model rarely satisfies (two responses, JSON,
repeating the prompt, the n-th paragraph's first word) get less. Conflicts: IFEval's `INSTRUCTION_CONFLICTS`
(made symmetric with its own `conflict_make`) plus pairs that cannot both hold under these checkers (see
`EXTRA_CONFLICTS`).
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from if_verifiable.ifeval import instructions_registry as _registry

from alignkit.data.suite_gen.tasks import BaseTask

Sampler = Callable[[random.Random, BaseTask], dict[str, Any]]

REPEAT_PROMPT = "combination:repeat_prompt"
# Languages a small English-first chat model has some chance with (IFEval draws from 30 ISO 639-1 codes).
LANGUAGES: dict[str, float] = {"es": 3.0, "fr": 3.0, "de": 2.0, "it": 2.0, "pt": 2.0}
END_PHRASES: tuple[str, ...] = ("Any other questions?", "Is there anything else I can help with?",
                                "Have a nice day.", "That is all.", "Thank you for reading.",
                                "Let me know if you have questions.")
# First words for the n-th paragraph: none is a topic word, so no keyword constraint can clash with it.
FIRST_WORDS: tuple[str, ...] = ("first", "today", "imagine", "remember", "finally", "next", "overall", "sometimes",
                                "honestly", "yesterday", "meanwhile", "still")
COMMON_LETTERS = "eaotisnr"
RARE_LETTERS = "zqxjkv"


@dataclass(frozen=True)
class ConstraintKind:
    """One IFEval instruction id, its draw weight and how to draw its kwargs for a base task."""

    id: str
    weight: float
    sample: Sampler


def _weighted(rng: random.Random, options: dict[Any, float]) -> Any:
    keys = list(options)
    return rng.choices(keys, weights=[options[k] for k in keys])[0]


def _no_kwargs(rng: random.Random, task: BaseTask) -> dict[str, Any]:
    return {}


def _words(rng: random.Random, task: BaseTask) -> list[str]:
    return sorted(rng.sample(task.words, rng.choice((1, 2))))


def _relation(rng: random.Random, at_least: tuple[int, ...], less_than: tuple[int, ...], p_at_least: float,
              number_key: str, relation_key: str = "relation") -> dict[str, Any]:
    if rng.random() < p_at_least:
        return {number_key: rng.choice(at_least), relation_key: "at least"}
    return {number_key: rng.choice(less_than), relation_key: "less than"}


def _letter(rng: random.Random, task: BaseTask) -> dict[str, Any]:
    # Common letters with "at least" and rare ones with "less than": both reachable by an ordinary answer.
    if rng.random() < 0.6:
        return {"letter": rng.choice(COMMON_LETTERS), "let_frequency": rng.choice((3, 5, 8, 10)),
                "let_relation": "at least"}
    return {"letter": rng.choice(RARE_LETTERS), "let_frequency": rng.choice((2, 3, 5)), "let_relation": "less than"}


def _end_phrase(rng: random.Random, task: BaseTask) -> dict[str, Any]:
    # A phrase holding a topic word (e.g. "questions") could be one the prompt also forbids.
    ok = [p for p in END_PHRASES if not set(re.findall(r"[a-z]+", p.lower())) & set(task.words)]
    return {"end_phrase": rng.choice(ok)}


def _nth_paragraph(rng: random.Random, task: BaseTask) -> dict[str, Any]:
    n = rng.choice((2, 3))
    return {"num_paragraphs": n, "nth_paragraph": rng.randint(1, n), "first_word": rng.choice(FIRST_WORDS)}


CONSTRAINT_KINDS: tuple[ConstraintKind, ...] = (
    ConstraintKind("keywords:existence", 1.0, lambda r, t: {"keywords": _words(r, t)}),
    ConstraintKind("keywords:frequency", 0.8, lambda r, t: {
        "keyword": r.choice(t.words), **_relation(r, (2, 3), (2, 3), 0.7, "frequency")}),
    ConstraintKind("keywords:forbidden_words", 1.0, lambda r, t: {"forbidden_words": _words(r, t)}),
    ConstraintKind("keywords:letter_frequency", 0.6, _letter),
    ConstraintKind("language:response_language", 0.5, lambda r, t: {"language": _weighted(r, LANGUAGES)}),
    ConstraintKind("length_constraints:number_sentences", 0.8, lambda r, t: _relation(
        r, (2, 3, 4), (3, 4, 5, 6), 0.5, "num_sentences")),
    ConstraintKind("length_constraints:number_paragraphs", 0.7, lambda r, t: {"num_paragraphs": r.choice((2, 3))}),
    ConstraintKind("length_constraints:number_words", 1.0, lambda r, t: _relation(
        r, (20, 30, 40, 50), (40, 60, 80, 100, 150), 0.4, "num_words")),
    ConstraintKind("length_constraints:nth_paragraph_first_word", 0.4, _nth_paragraph),
    ConstraintKind("detectable_content:number_placeholders", 0.8, lambda r, t: {
        "num_placeholders": r.choice((1, 2, 3))}),
    ConstraintKind("detectable_content:postscript", 1.0, lambda r, t: {
        "postscript_marker": r.choice(("P.S.", "P.P.S"))}),
    ConstraintKind("detectable_format:number_bullet_lists", 1.0, lambda r, t: {
        "num_bullets": _weighted(r, {1: 1.0, 2: 3.0, 3: 3.0, 4: 1.0})}),
    ConstraintKind("detectable_format:constrained_response", 0.4, _no_kwargs),
    ConstraintKind("detectable_format:number_highlighted_sections", 1.0, lambda r, t: {
        "num_highlights": r.choice((1, 2, 3))}),
    ConstraintKind("detectable_format:multiple_sections", 0.6, lambda r, t: {
        "section_spliter": r.choice(("Section", "SECTION")), "num_sections": r.choice((2, 3))}),
    ConstraintKind("detectable_format:json_format", 0.5, _no_kwargs),
    ConstraintKind("detectable_format:title", 1.0, _no_kwargs),
    ConstraintKind("combination:two_responses", 0.4, _no_kwargs),
    # `prompt_to_repeat` is the rendered request before this sentence; the generator fills it in.
    ConstraintKind(REPEAT_PROMPT, 0.4, _no_kwargs),
    ConstraintKind("startend:end_checker", 1.0, _end_phrase),
    ConstraintKind("change_case:capital_word_frequency", 0.6, lambda r, t: _relation(
        r, (2, 3, 5), (3, 5, 10), 0.6, "capital_frequency", "capital_relation")),
    ConstraintKind("change_case:english_capital", 0.8, _no_kwargs),
    ConstraintKind("change_case:english_lowercase", 1.0, _no_kwargs),
    ConstraintKind("punctuation:no_comma", 1.0, _no_kwargs),
    ConstraintKind("startend:quotation", 1.0, _no_kwargs),
)
KINDS_BY_ID: dict[str, ConstraintKind] = {k.id: k for k in CONSTRAINT_KINDS}

# Pairs IFEval allows but these checkers make (nearly) impossible together.
EXTRA_CONFLICTS: tuple[tuple[str, str], ...] = (
    # Keywords are drawn from the same topic words: "use X" and "never use X" could coincide.
    ("keywords:existence", "keywords:forbidden_words"),
    ("keywords:existence", "keywords:frequency"),
    ("keywords:forbidden_words", "keywords:frequency"),
    # "fewer than 2 k" and a required keyword such as "kick" could be impossible together.
    ("keywords:letter_frequency", "keywords:existence"),
    ("keywords:letter_frequency", "keywords:frequency"),
    # Both want the last characters of the answer.
    ("startend:quotation", "startend:end_checker"),
    ("detectable_content:postscript", "startend:end_checker"),
    # End phrases and "Section"/"SECTION" markers are mixed case; the case checkers see every letter.
    ("change_case:english_lowercase", "startend:end_checker"),
    ("change_case:english_capital", "startend:end_checker"),
    ("change_case:english_lowercase", "detectable_format:multiple_sections"),
    ("change_case:english_capital", "detectable_format:multiple_sections"),
    # Each SECTION marker is an all-caps word: "fewer than 3 capital words" with 3 sections cannot hold.
    ("change_case:capital_word_frequency", "detectable_format:multiple_sections"),
    # A title line, a section marker or a postscript becomes a paragraph of its own for the '\n\n' split.
    ("length_constraints:nth_paragraph_first_word", "detectable_format:title"),
    ("length_constraints:nth_paragraph_first_word", "detectable_format:multiple_sections"),
    ("length_constraints:nth_paragraph_first_word", "detectable_content:postscript"),
    # IFEval excludes sentence counts with *** paragraphs; the same holds for blank-line paragraphs.
    ("length_constraints:nth_paragraph_first_word", "length_constraints:number_sentences"),
    # The request to repeat holds commas (task forms, keyword lists, IFEval's own no-comma sentence).
    ("combination:repeat_prompt", "punctuation:no_comma"),
    # The required first word is English.
    ("length_constraints:nth_paragraph_first_word", "language:response_language"),
)


def _conflict_table() -> dict[str, set[str]]:
    table = _registry.conflict_make(copy.deepcopy(_registry.INSTRUCTION_CONFLICTS))
    for a, b in EXTRA_CONFLICTS:
        table[a].add(b)
        table[b].add(a)
    return table


CONFLICTS: dict[str, set[str]] = _conflict_table()


def conflicts(a: str, b: str) -> bool:
    """Whether two instruction ids may not appear in the same prompt (IFEval's list, symmetric, plus ours)."""
    return a == b or b in CONFLICTS.get(a, set())


def draw_kinds(rng: random.Random, count: int, first: ConstraintKind | None = None) -> list[ConstraintKind]:
    """Up to `count` mutually compatible kinds by weight (starting with `first` when given); fewer when the
    chosen ones exclude all the rest (e.g. `detectable_format:constrained_response` conflicts with every id)."""
    chosen: list[ConstraintKind] = [] if first is None else [first]
    while len(chosen) < count:
        pool = [k for k in CONSTRAINT_KINDS if all(not conflicts(k.id, c.id) for c in chosen)]
        if not pool:
            break
        chosen.append(rng.choices(pool, weights=[k.weight for k in pool])[0])
    return chosen
