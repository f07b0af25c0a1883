"""WildFeedback-style mining: the rule-based signal classifier on hand-labelled user turns, and the records the
feedback builder makes from conversations (pairs when a revised answer follows, unpaired otherwise)."""

from __future__ import annotations

from alignkit.data.build import (
    FeedbackBuilder,
    LMFeedbackClassifier,
    RuleBasedFeedbackClassifier,
    items_from_conversations,
    load_conversations,
    run_build,
)
from alignkit.data.io import read_records
from alignkit.data.records import PairwiseExample, UnpairedExample
from alignkit.decode.sampler import Compute, Sample

# (user turn after an assistant answer, expected label). Written as varied real-sounding replies, not as copies
# of the classifier's patterns.
LABELLED_TURNS: list[tuple[str, str]] = [
    ("Thanks so much, this is exactly what I needed!", "sat"),
    ("Perfect, that works for me.", "sat"),
    ("Great answer, I appreciate the detail.", "sat"),
    ("Got it, makes sense now.", "sat"),
    ("Thank you! That's all I needed.", "sat"),
    ("Awesome, the script worked on the first try.", "sat"),
    ("ty, very clear", "sat"),
    ("Nice one. Love it.", "sat"),
    ("That helped a lot, cheers.", "sat"),
    ("Excellent explanation.", "sat"),
    ("That's wrong, Canberra is the capital of Australia.", "dsat"),
    ("No, that is incorrect. Water boils at 100 degrees at sea level.", "dsat"),
    ("I asked for a poem, not an essay.", "dsat"),
    ("You didn't include the second example I gave you.", "dsat"),
    ("This isn't helpful at all.", "dsat"),
    ("That doesn't make sense.", "dsat"),
    ("Can you try again and make it shorter?", "dsat"),
    ("Please rewrite it in a friendlier tone.", "dsat"),
    ("Too vague. I need more detail on step 3.", "dsat"),
    ("That's way too long, nobody will read it.", "dsat"),
    ("Thanks, but that's not right either.", "dsat"),
    ("You forgot to convert the units.", "dsat"),
    ("Useless. The code throws an error.", "dsat"),
    ("Actually, the meeting is on Tuesday, not Monday.", "dsat"),
    ("What about the weather in Paris tomorrow?", "neutral"),
    ("Now write a haiku about autumn.", "neutral"),
    ("How many calories are in an apple?", "neutral"),
    ("My daughter is seven, if that matters.", "neutral"),
    ("Can you also list three museums in Rome?", "neutral"),
    ("Next question: what is a prime number?", "neutral"),
]


def test_rule_classifier_accuracy_on_labelled_turns():
    clf = RuleBasedFeedbackClassifier()
    predicted = clf.classify([t for t, _ in LABELLED_TURNS])
    correct = [p.label == gold for p, (_, gold) in zip(predicted, LABELLED_TURNS, strict=True)]
    accuracy = sum(correct) / len(correct)
    misses = [(t, g, p.label) for p, (t, g) in zip(predicted, LABELLED_TURNS, strict=True) if p.label != g]
    assert len(LABELLED_TURNS) == 30
    assert accuracy >= 0.9, misses


def test_dissatisfaction_outranks_gratitude_and_categories_are_named():
    clf = RuleBasedFeedbackClassifier()
    sig = clf.classify_one("Thanks, but that's wrong.")
    assert (sig.label, sig.category) == ("dsat", "factual_error")
    assert clf.classify_one("Make it shorter please").category == "revision_request"
    assert clf.classify_one("Thank you!").category == "gratitude"
    assert clf.classify_one("Where is Lima?").label == "neutral"


def _chat(*turns: str) -> list[dict[str, str]]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


CONVERSATIONS = [
    {"id": "c1", "messages": _chat("Capital of Australia?", "Sydney.", "That's wrong, it's not Sydney.",
                                   "Canberra.", "Thanks!")},
    {"id": "c2", "messages": _chat("Write a haiku.", "Leaves fall slowly down", "Perfect, thank you.")},
    {"id": "c3", "messages": _chat("Summarise this.", "A long summary ...", "Too long.")},
    {"id": "c4", "messages": _chat("Hi", "Hello! How can I help?", "What is 2+2?", "4")},
    {"id": "c5", "messages": _chat("Translate 'cat'.", "Gato.", "I asked for French.", "Chat (Spanish: gato).",
                                   "Still not what I wanted, useless.")},
]


def test_feedback_builder_pairwise(tmp_path):
    out = tmp_path / "fb.jsonl"
    report = run_build(FeedbackBuilder(fmt="pairwise"), items_from_conversations(CONVERSATIONS), out,
                       progress=False)
    pairs = read_records(out, kind="pairwise").records
    assert len(pairs) == 1 and isinstance(pairs[0], PairwiseExample)
    p = pairs[0]
    assert (p.chosen, p.rejected) == ("Canberra.", "Sydney.")
    assert p.prompt == [{"role": "user", "content": "Capital of Australia?"}]
    assert p.metadata["builder"] == "feedback" and p.metadata["category"] == "factual_error"
    assert p.metadata["conversation_id"] == "c1"
    # c2 (sat) and c3 (dsat, no revision) are unpaired signals; c4 neutral; c5's revision was rejected too
    assert report.skipped["unpaired_signals_not_emitted"] == 4
    assert report.skipped["revision_also_rejected"] == 1
    assert report.dropped["no_preference_signal"] == 4


def test_feedback_builder_unpaired(tmp_path):
    out = tmp_path / "fb.jsonl"
    run_build(FeedbackBuilder(fmt="unpaired"), items_from_conversations(CONVERSATIONS), out, progress=False)
    rows = read_records(out, kind="unpaired").records
    assert all(isinstance(r, UnpairedExample) for r in rows)
    labels = {(r.metadata["conversation_id"], r.completion): r.label for r in rows}
    assert labels == {
        ("c1", "Canberra."): True, ("c1", "Sydney."): False,  # from the pair; Canberra's "Thanks!" not doubled
        ("c2", "Leaves fall slowly down"): True,
        ("c3", "A long summary ..."): False,
        ("c5", "Gato."): False, ("c5", "Chat (Spanish: gato)."): False,
    }


def test_load_conversations_and_resume(tmp_path):
    import json

    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in CONVERSATIONS))
    items = load_conversations(str(src))
    out = tmp_path / "fb.jsonl"
    first = run_build(FeedbackBuilder(fmt="unpaired"), items, out, progress=False, limit=2)
    second = run_build(FeedbackBuilder(fmt="unpaired"), items, out, progress=False)
    assert (first.processed, second.processed, second.resumed) == (2, 3, 2)
    assert len(read_records(out, kind="unpaired").records) == 6


class ScriptedSampler:
    """Answers each prompt with the next scripted text."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.compute, self.calls = list(texts), Compute(), 0

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        out = []
        for _ in prompts:
            out.append([Sample(self.texts[self.calls % len(self.texts)], [], 0.0, "stop") for _ in range(n)])
            self.calls += 1
        return out


def test_lm_classifier_parses_category_names_and_flags_unparsed():
    clf = LMFeedbackClassifier(ScriptedSampler(["Gratitude.", "revision request", "banana", "none"]))
    ctx = [[{"role": "assistant", "content": "x"}]] * 4
    sigs = clf.classify(["a", "b", "c", "d"], ctx)
    assert [(s.label, s.category) for s in sigs] == [
        ("sat", "gratitude"), ("dsat", "revision_request"), ("neutral", "unparsed"), ("neutral", "none")]
