"""IFEval/CSR verifiers (testtime_eval.md B8, objectives.md §9.2) and the simple checks, offline."""

from __future__ import annotations

import socket

import pytest

from alignkit.data.records import PromptExample
from alignkit.errors import RewardError
from alignkit.rewards.verifiers import (
    ConstraintReward,
    JsonReward,
    KeywordReward,
    LengthReward,
    RegexReward,
    check_constraints,
    loose_variants,
    parse_constraints,
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifiers must never reach the network or NLTK data files (punkt_tab is not downloadable here)."""
    import nltk

    def refuse(*args, **kwargs):
        raise AssertionError("network or NLTK data access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(nltk, "download", refuse)
    monkeypatch.setattr(nltk.data, "load", refuse)


def one(cid: str, text: str, prompt: str = "p", **kwargs) -> dict:
    return check_constraints(prompt, text, parse_constraints([{"id": cid, "kwargs": kwargs}]))[0]


@pytest.mark.parametrize("cid,kwargs,good,bad", [
    ("keywords:existence", {"keywords": ["cat", "mat"]}, "The cat is on the mat.", "The dog is on the rug."),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "All good here.", "This is bad."),
    ("keywords:frequency", {"keyword": "go", "frequency": 2, "relation": "at least"}, "go go now", "go home"),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "Tiny answer.",
     "This answer has far too many words in it."),
    ("punctuation:no_comma", {}, "No commas here.", "Commas, sadly."),
    ("detectable_format:title", {}, "<<My Title>>\nBody.", "No title."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* one"),
    ("change_case:english_lowercase", {}, "all lowercase text here.", "Not Lowercase Text Here."),
    ("startend:end_checker", {"end_phrase": "Any questions?"}, "Done. Any questions?", "Done."),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{not json"),
])
def test_ifeval_checkers_pass_and_fail(cid: str, kwargs: dict, good: str, bad: str) -> None:
    assert one(cid, good, **kwargs)["strict"] is True
    assert one(cid, bad, **kwargs)["strict"] is False


# Sentence counts that NLTK's trained English Punkt model gives (Kiss & Strunk 2006): abbreviations, initials,
# decimals and dotted forms do not end a sentence; an abbreviation before a frequent sentence starter does.
PUNKT_CASES = [
    ("Dr. Smith met Mr. Jones at 3 p.m. on Jan. 5. They talked.", 2),
    ("The U.S. economy grew. Prices rose.", 2),
    ("He paid $5.50 for it. That was cheap.", 2),
    ("Mrs. Brown vs. Mr. Green, e.g. in court, i.e. today.", 1),
    ("J. R. R. Tolkien wrote books. He died in 1973.", 2),
    ("I bought apples, pears, etc. The rest was fine.", 2),
    ("We met at 5 p.m. The talk began.", 2),
    ('He said "Stop." Then he left.', 2),
    ("Is it late? Yes! Go home.", 3),
    ("Wait... what happened? Nothing.", 2),
]


@pytest.mark.parametrize("text,n", PUNKT_CASES)
def test_number_sentences_counts_like_punkt(text: str, n: int) -> None:
    kw = {"relation": "at least"}
    assert one("length_constraints:number_sentences", text, num_sentences=n, **kw)["strict"]
    assert not one("length_constraints:number_sentences", text, num_sentences=n + 1, **kw)["strict"]


def test_offline_sentence_split_keeps_abbreviations_inside_sentences() -> None:
    from if_verifiable.ifeval import instructions_util

    from alignkit.rewards.verifiers import install_offline_nltk

    install_offline_nltk()
    assert instructions_util.nltk.sent_tokenize("Dr. Smith met Mr. Jones at 3 p.m. on Jan. 5. They talked.") == [
        "Dr. Smith met Mr. Jones at 3 p.m. on Jan. 5.", "They talked."]
    assert instructions_util.nltk.word_tokenize("Mr. Jones left. He ran.") == [
        "Mr.", "Jones", "left", ".", "He", "ran", "."]


def test_sentence_splitting_verifiers_work_offline() -> None:
    # number_sentences uses NLTK's punkt model in IFEval; here the offline splitter stands in.
    kw = {"num_sentences": 3, "relation": "at least"}
    assert one("length_constraints:number_sentences", "Dr. Smith came. He sat down! Was it late?", **kw)["strict"]
    assert not one("length_constraints:number_sentences", "One sentence only. Two.", **kw)["strict"]
    kw = {"num_sentences": 2, "relation": "less than"}
    assert one("length_constraints:number_sentences", "Just one sentence here.", **kw)["strict"]
    # capital_word_frequency calls nltk.word_tokenize (punkt_tab in NLTK) -> offline tokenizer.
    kw = {"capital_frequency": 2, "capital_relation": "at least"}
    assert one("change_case:capital_word_frequency", "THIS is VERY important. OK?", **kw)["strict"]
    assert not one("change_case:capital_word_frequency", "Nothing shouted here.", **kw)["strict"]


def test_language_detection_is_offline_and_deterministic() -> None:
    text = "The weather is lovely today and we are going for a long walk in the park."
    assert all(one("language:response_language", text, language="en")["strict"] for _ in range(3))
    assert not one("language:response_language", text, language="de")["strict"]


def test_loose_variants_follow_ifeval() -> None:
    v = loose_variants("Sure!\n**Body**\nBye")
    assert len(v) == 8
    assert v[1] == "Sure!\nBody\nBye" and v[2] == "**Body**\nBye" and v[3] == "Sure!\n**Body**"
    assert v[4] == "**Body**" and v[7] == "Body"
    # An intro line breaks the strict check but not the loose one.
    r = one("startend:quotation", 'Here you go:\n"quoted answer"')
    assert r == {"id": "startend:quotation", "strict": False, "loose": True}


def test_ifeval_and_csr_rewards_with_context_and_records() -> None:
    cons = [{"id": "keywords:existence", "kwargs": {"keywords": ["cat"]}},
            {"id": "punctuation:no_comma", "kwargs": {}}]
    prompts = ["Write about a cat, no commas."] * 3
    comps = ["A cat sat.", "A cat, sat.", "A dog, sat."]
    ife = ConstraintReward("all")(prompts, comps, constraints=[cons] * 3)
    csr = ConstraintReward("rate")(prompts, comps, constraints=[cons] * 3)
    assert ife.scores == [1.0, 0.0, 0.0]
    assert csr.scores == [1.0, 0.5, 0.0]
    assert csr.attributes[1]["constraints"][1] == {"id": "punctuation:no_comma", "strict": False, "loose": False}
    # Constraints embedded in prompt records, in IFEval's own format.
    rec = PromptExample(prompt="Mention a cat.", constraints=[{"id": "keywords:existence",
                                                               "kwargs": {"keywords": ["cat"]}}])
    assert ConstraintReward("rate")([rec, rec], ["cat!", "dog"]).scores == [1.0, 0.0]
    ifeval_row = {"prompt": "x", "constraints": {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}}
    assert ConstraintReward("all", loose=True)([ifeval_row], ["a b"]).scores == [1.0]


def test_empty_completion_and_thinking() -> None:
    cons = [[{"id": "punctuation:no_comma", "kwargs": {}}]]
    assert ConstraintReward("all")(["p"], ["   "], constraints=cons).scores == [0.0]
    assert ConstraintReward("all")(["p"], ["<think>a, b</think>no commas"], constraints=cons).scores == [1.0]
    res = ConstraintReward("rate")(["p"], ["x"], constraints=[[]])
    assert res.scores == [0.0] and res.info["without_constraints"] == 1


def test_bad_constraints_raise_reward_error() -> None:
    r = ConstraintReward("all")
    with pytest.raises(RewardError, match="unknown IFEval instruction id 'nope:x'"):
        r(["p"], ["c"], constraints=[[{"id": "nope:x", "kwargs": {}}]])
    with pytest.raises(RewardError, match="missing kwargs"):
        r(["p"], ["c"], constraints=[[{"id": "keywords:frequency", "kwargs": {"keyword": "a"}}]])
    with pytest.raises(RewardError, match="needs context\\['constraints'\\]"):
        r(["p"], ["c"])
    with pytest.raises(RewardError, match="2 entries for 1 completions"):
        r(["p"], ["c"], constraints=[[], []])


def test_regex_keyword_length_json() -> None:
    assert RegexReward(r"\d{3}")(["p"] * 2, ["abc 123", "12"]).scores == [1.0, 0.0]
    assert RegexReward(r"\d+", mode="fullmatch")(["p"] * 2, ["123", "123a"]).scores == [1.0, 0.0]
    k = KeywordReward(include=["Cat"], exclude=["dog"])
    assert k(["p"] * 3, ["a cat", "a cat and a dog", "concatenate"]).scores == [1.0, 0.0, 0.0]
    assert LengthReward(2, 3)(["p"] * 3, ["one two", "one two three four", "x"]).scores == [1.0, 0.0, 0.0]
    assert LengthReward(max=3, unit="chars")(["p"] * 2, ["abc", "abcd"]).scores == [1.0, 0.0]
    assert JsonReward()(["p"] * 2, ['```json\n{"a": [1]}\n```', "{'a': 1}"]).scores == [1.0, 0.0]
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}
    res = JsonReward(schema)(["p"] * 3, ['{"n": 3}', '{"n": -1}', '{"m": 1}'])
    assert res.scores == [1.0, 0.0, 0.0] and "minimum" in res.attributes[1]["error"]
    with pytest.raises(RewardError, match="invalid pattern"):
        RegexReward("(")
    with pytest.raises(RewardError, match="invalid schema"):
        JsonReward({"type": 5})
