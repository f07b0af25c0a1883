"""Every instruction type of the suite is checked by the `csr` reward as shipped: for one real suite constraint of
each of the 25 IFEval ids (kwargs as shipped), a hand-made completion that follows it scores 1.0 and one that
breaks it scores 0.0 (issue #15 item 1). The checks run offline (`install_offline_nltk`, seeded langdetect)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from alignkit.data.records import PromptExample
from alignkit.data.suite import suite_records
from alignkit.rewards.registry import load_reward

Make = Callable[[dict[str, Any]], str]

SENTENCES = {
    "es": "Hoy hace muy buen tiempo y vamos a caminar por el parque con nuestros amigos.",
    "fr": "Aujourd'hui il fait très beau et nous allons nous promener dans le parc avec nos amis.",
    "de": "Heute ist das Wetter sehr schön und wir gehen mit unseren Freunden im Park spazieren.",
    "it": "Oggi il tempo è molto bello e andiamo a passeggiare nel parco con i nostri amici.",
    "pt": "Hoje o tempo está muito bonito e vamos passear no parque com os nossos amigos.",
}
ENGLISH = "the weather is very nice today and we are going for a walk in the park with our friends."
NONE = "Hmm."  # no topic word, no common or rare letter of the letter constraints, one sentence, one word


def _relation(kw: dict[str, Any], many: str, number: str) -> tuple[str, str]:
    """(follows, breaks) for an "at least N" / "less than N" count: `many` repeated N times reaches N."""
    reach, short = " ".join([many] * kw[number]), NONE
    at_least = kw.get("relation", kw.get("let_relation", kw.get("capital_relation"))) == "at least"
    return (reach, short) if at_least else (short, reach)


def _paragraphs(kw: dict[str, Any], first: str) -> str:
    paras = ["Intro text here."] * kw["num_paragraphs"]
    paras[kw["nth_paragraph"] - 1] = f"{first.capitalize()} text here."
    return "\n\n".join(paras)


# instruction id -> (a completion that follows it, a completion that breaks it), from the shipped kwargs.
CASES: dict[str, tuple[Make, Make]] = {
    "keywords:existence": (lambda kw: "We talk about " + " and ".join(kw["keywords"]) + ".", lambda kw: NONE),
    "keywords:frequency": (lambda kw: _relation(kw, kw["keyword"], "frequency")[0],
                           lambda kw: _relation(kw, kw["keyword"], "frequency")[1]),
    "keywords:forbidden_words": (lambda kw: NONE, lambda kw: f"We talk about {kw['forbidden_words'][-1]}."),
    "keywords:letter_frequency": (lambda kw: _relation(kw, kw["letter"], "let_frequency")[0],
                                  lambda kw: _relation(kw, kw["letter"], "let_frequency")[1]),
    "language:response_language": (lambda kw: SENTENCES[kw["language"]], lambda kw: ENGLISH),
    "length_constraints:number_sentences": (lambda kw: _relation(kw, "It rains.", "num_sentences")[0],
                                            lambda kw: _relation(kw, "It rains.", "num_sentences")[1]),
    "length_constraints:number_paragraphs": (lambda kw: "\n***\n".join(["A paragraph."] * kw["num_paragraphs"]),
                                             lambda kw: "A paragraph."),
    "length_constraints:number_words": (lambda kw: _relation(kw, "word", "num_words")[0],
                                        lambda kw: _relation(kw, "word", "num_words")[1]),
    "length_constraints:nth_paragraph_first_word": (lambda kw: _paragraphs(kw, kw["first_word"]),
                                                    lambda kw: _paragraphs(kw, "intro")),
    "detectable_content:number_placeholders": (lambda kw: " ".join(["[name]"] * kw["num_placeholders"]),
                                               lambda kw: NONE),
    "detectable_content:postscript": (lambda kw: f"Body text.\n\n{kw['postscript_marker']} See you soon.",
                                      lambda kw: "Body text."),
    "detectable_format:number_bullet_lists": (lambda kw: "\n".join(["* a point"] * kw["num_bullets"]),
                                              lambda kw: "\n".join(["* a point"] * (kw["num_bullets"] + 1))),
    "detectable_format:constrained_response": (lambda kw: "My answer is yes.", lambda kw: "Sure thing."),
    "detectable_format:number_highlighted_sections": (
        lambda kw: " and ".join(["*key part*"] * kw["num_highlights"]), lambda kw: "No highlights at all."),
    "detectable_format:multiple_sections": (
        lambda kw: "\n".join(f"{kw['section_spliter']} {i}\nSome content." for i in range(1, kw["num_sections"] + 1)),
        lambda kw: "Some content."),
    "detectable_format:json_format": (lambda kw: '```json\n{"answer": "yes"}\n```', lambda kw: "answer: yes"),
    "detectable_format:title": (lambda kw: "<<A day out>>\nBody text.", lambda kw: "A day out\nBody text."),
    "combination:two_responses": (lambda kw: "First answer.\n******\nSecond answer.",
                                  lambda kw: "First answer.\n******\nFirst answer."),
    "combination:repeat_prompt": (lambda kw: kw["prompt_to_repeat"] + " Here is my answer.",
                                  lambda kw: "Here is my answer. " + kw["prompt_to_repeat"]),
    "startend:end_checker": (lambda kw: "Body text. " + kw["end_phrase"], lambda kw: kw["end_phrase"] + " Body text."),
    "change_case:capital_word_frequency": (lambda kw: _relation(kw, "BIG", "capital_frequency")[0],
                                           lambda kw: _relation(kw, "BIG", "capital_frequency")[1]),
    "change_case:english_capital": (lambda kw: ENGLISH.upper(), lambda kw: ENGLISH.capitalize()),
    "change_case:english_lowercase": (lambda kw: ENGLISH, lambda kw: ENGLISH.capitalize()),
    "punctuation:no_comma": (lambda kw: "No commas in here.", lambda kw: "Yes, a comma."),
    "startend:quotation": (lambda kw: '"All of it quoted."', lambda kw: 'Not "all" of it quoted.'),
}


def test_the_cases_cover_every_instruction_type():
    assert set(CASES) == set(INSTRUCTION_DICT)


@functools.cache
def _records(split: str) -> list[dict[str, Any]]:
    return suite_records(split)


def _examples(cid: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The first test and the first train record holding `cid`, with that constraint alone."""
    out = []
    for split in ("test", "train"):
        record = next(r for r in _records(split) if any(c["id"] == cid for c in r["constraints"]))
        out.append((record, next(c for c in record["constraints"] if c["id"] == cid)))
    return out


@pytest.fixture(scope="module")
def csr():
    return load_reward("csr")


@pytest.mark.parametrize("cid", sorted(CASES))
def test_csr_passes_a_following_and_fails_a_breaking_completion(csr, cid):
    follows, breaks = CASES[cid]
    for record, constraint in _examples(cid):
        example = PromptExample(record["prompt"], constraints=[constraint])
        kw = constraint["kwargs"]
        scores = csr([example, example], [follows(kw), breaks(kw)]).scores
        assert scores == [1.0, 0.0], (record["id"], constraint, follows(kw), breaks(kw))


def test_csr_is_the_fraction_of_a_records_constraints_followed(csr):
    # a shipped two-constraint record: no commas + a constraint an appended sentence cannot break
    appendable = {"detectable_format:title", "keywords:existence", "detectable_content:number_placeholders"}
    record = next(r for r in _records("test") if len(r["constraints"]) == 2
                  and {c["id"] for c in r["constraints"]} - {"punctuation:no_comma"} <= appendable
                  and "punctuation:no_comma" in {c["id"] for c in r["constraints"]})
    other = next(c for c in record["constraints"] if c["id"] != "punctuation:no_comma")
    example = PromptExample(record["prompt"], constraints=record["constraints"])
    follows_other_only = CASES[other["id"]][0](other["kwargs"]) + " Yes, a comma."
    assert csr([example], [follows_other_only]).scores == [0.5]
