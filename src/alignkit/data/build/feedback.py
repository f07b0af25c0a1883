"""The `feedback` builder: preferences mined from users' reactions in multi-turn conversations (WildFeedback).

WildFeedback (Shi et al. 2024, *WildFeedback: Aligning LLMs With In-situ User Interactions And Feedback*, arXiv
2408.15549) reads the user turn that follows an assistant answer for signals of satisfaction (SAT) or
dissatisfaction (DSAT), using a rubric adapted from SPUR (Lin et al. 2024, *Interpretable User Satisfaction
Estimation for Conversational Systems with Large Language Models*), and turns them into preference data.

Signal taxonomy (the subset of the SPUR/WildFeedback rubric that can be read from the next user turn alone):

  SAT   gratitude          "thanks", "thank you", "I appreciate it"
        praise             "perfect", "great answer", "exactly what I needed", "love it"
        acknowledgment     "that works", "got it", "makes sense", "that helped", "it worked"
        positive_closure   "that's all I needed", "that's it for now"
  DSAT  negative_feedback  "not helpful", "useless", "that doesn't make sense", "not what I wanted"
        factual_error      "that's wrong", "incorrect", "not true", "actually, X is ..."
        ignored_instruction "I asked for", "I meant", "you didn't", "you forgot", "still not"
        revision_request   "try again", "rewrite it", "redo", "rephrase", "make it shorter"
        insufficient_detail "more detail", "too vague", "elaborate", "not enough"
        style              "too long", "too formal", "too wordy", "simpler"
  neutral                  anything else (a new question, small talk)

A DSAT cue wins over a SAT cue in the same turn ("thanks, but that's wrong" is dissatisfaction).

Turning signals into records, for each assistant answer a_t (with the conversation up to its user request as the
prompt) followed by a user turn u_{t+1}:
* DSAT and the next assistant turn a_{t+2} exists (a revised answer) and is not itself met with DSAT: a pair,
  chosen = a_{t+2}, rejected = a_t, prompt = the context of a_t (the revision is what the user wanted for that
  request); if the revision is also rejected, both answers become unpaired negatives;
* DSAT with no revision: an unpaired negative (a_t, label False);
* SAT: an unpaired positive (a_t, label True);
* neutral: nothing (counted).
`fmt="pairwise"` writes the pairs only (unpaired signals are counted as `unpaired_signals_not_emitted`);
`fmt="unpaired"` writes every signal as unpaired records, each pair as its chosen (True) and rejected (False).

The classifier is pluggable: `RuleBasedFeedbackClassifier` (regular expressions, the default) or
`LMFeedbackClassifier(sampler)`, which asks a model to name the category.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from alignkit.data.build.common import BuildItem, item_key
from alignkit.data.build.runner import Outcome
from alignkit.data.io import read_jsonl
from alignkit.data.records import Message, PairwiseExample, Record, UnpairedExample
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError, DataError

SAT, DSAT, NEUTRAL = "sat", "dsat", "neutral"

# (label, category, pattern); DSAT patterns are tried first.
TAXONOMY: tuple[tuple[str, str, str], ...] = (
    (DSAT, "factual_error", r"\b(that'?s|that is|this is|it'?s|you'?re|you are) (just |completely |totally )?"
                            r"(wrong|incorrect|not (right|correct|true|accurate))\b|\bincorrect\b|\bnot true\b"
                            r"|\bthere'?s an? (mistake|error)\b|\bactually,? (it|that|the|there)\b"),
    (DSAT, "ignored_instruction", r"\bi (asked|said|told you|wanted|requested|meant)\b|\byou (didn'?t|did not|forgot|"
                                  r"ignored|missed|left out)\b|\bthat'?s not what i\b|\bstill (too|not|no)\b"),
    (DSAT, "negative_feedback", r"\b(not|isn'?t|wasn'?t) (helpful|useful|good|what i (wanted|needed|meant))\b"
                                r"|\b(useless|unhelpful|terrible|awful|nonsense)\b|\bdoesn'?t (make sense|help|"
                                r"work|answer)\b|\b(that|this) (is|was) bad\b|\bthanks for nothing\b|\bare you sure\b"),
    (DSAT, "revision_request", r"\b(try again|one more time|redo|rewrite|rephrase|start over)\b"
                               r"|\bmake it (shorter|longer|simpler|more|less)\b|\bcan you (change|fix|shorten)\b"),
    (DSAT, "insufficient_detail", r"\b(more (detail|details|specific)|too (vague|short|brief|generic)|elaborate|"
                                  r"not enough)\b"),
    (DSAT, "style", r"\btoo (long|formal|wordy|complicated|casual|technical)\b|\b(simpler|less formal)\b"),
    (SAT, "gratitude", r"\b(thanks|thank you|thx|ty|much appreciated|i appreciate)\b"),
    (SAT, "praise", r"\b(perfect|great|awesome|excellent|amazing|wonderful|brilliant|fantastic|love it|"
                    r"well done|nice( job| work| one)?|exactly what i (needed|wanted))\b"),
    (SAT, "acknowledgment", r"\b(that|this|it) (works|worked|helps|helped|makes sense)\b"
                            r"|\b(that|this|it) (is|was) (really |very |so |super )?(helpful|useful|clear)\b"
                            r"|\b(got it|makes sense|understood|that'?s clear)\b"),
    (SAT, "positive_closure", r"\bthat'?s (all|it)( i needed| for now)?\b"),
)
_COMPILED = [(label, cat, re.compile(p, re.IGNORECASE)) for label, cat, p in TAXONOMY]
CATEGORIES: dict[str, str] = {cat: label for label, cat, _ in TAXONOMY}


@dataclass(frozen=True)
class FeedbackSignal:
    label: str  # "sat" | "dsat" | "neutral"
    category: str  # a TAXONOMY category, "none" for neutral
    cue: str | None = None  # the matched text (rule-based) or the model's answer (LM)


class FeedbackClassifier(Protocol):
    name: str

    def classify(self, turns: Sequence[str], contexts: Sequence[list[Message]]) -> list[FeedbackSignal]:
        """The signal in each user turn; contexts[i] is the conversation before turns[i]."""
        ...


class RuleBasedFeedbackClassifier:
    """Regular expressions over the next user turn (TAXONOMY); DSAT cues take precedence over SAT cues."""

    name = "rules"

    def classify_one(self, turn: str) -> FeedbackSignal:
        normalized = turn.replace("’", "'")
        for label, cat, pattern in _COMPILED:
            m = pattern.search(normalized)
            if m:
                return FeedbackSignal(label, cat, m.group(0))
        return FeedbackSignal(NEUTRAL, "none")

    def classify(self, turns: Sequence[str], contexts: Sequence[list[Message]] = ()) -> list[FeedbackSignal]:
        return [self.classify_one(t) for t in turns]


LM_TEMPLATE = """Classify the user's reply to an AI assistant. Categories:
{categories}
- none: neither satisfied nor dissatisfied (for example a new question)

Assistant's answer: {answer}
User's reply: {turn}

Answer with one category name only."""


class LMFeedbackClassifier:
    """Ask a model (any Sampler) for the category; an answer naming no category counts as neutral with category
    `unparsed` (the builder reports it)."""

    name = "lm"

    def __init__(self, sampler: Sampler, template: str = LM_TEMPLATE, max_new_tokens: int = 8,
                 name: str = "lm") -> None:
        self.sampler, self.template, self.max_new_tokens, self.name = sampler, template, max_new_tokens, name

    def classify(self, turns: Sequence[str], contexts: Sequence[list[Message]]) -> list[FeedbackSignal]:
        cats = "\n".join(f"- {cat} ({'satisfied' if lab == SAT else 'dissatisfied'})"
                         for cat, lab in CATEGORIES.items())
        prompts = [self.template.format(categories=cats, turn=t, answer=(ctx[-1]["content"] if ctx else ""))
                   for t, ctx in zip(turns, contexts, strict=True)]
        out = self.sampler.sample(prompts, n=1, max_new_tokens=self.max_new_tokens, temperature=0.0, seed=0)
        signals = []
        for row in out:
            text = row[0].text.strip().lower()
            found = [(text.find(c), c) for c in CATEGORIES if c in text or c.replace("_", " ") in text]
            if found:
                cat = min(found)[1]
                signals.append(FeedbackSignal(CATEGORIES[cat], cat, text))
            elif "none" in text or "neutral" in text:
                signals.append(FeedbackSignal(NEUTRAL, "none", text))
            else:
                signals.append(FeedbackSignal(NEUTRAL, "unparsed", text))
        return signals


def validate_messages(messages: Any, where: str) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise DataError("must be a non-empty list of {'role', 'content'} messages", source=where, field="messages")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"message {j} must be {{'role': str, 'content': str}}, got {m!r}", source=where,
                            field="messages")
    return messages


def load_conversations(path: str) -> list[BuildItem]:
    """Conversations from JSONL rows `{"messages": [...], "id"?: ...}` as build items."""
    items = []
    for n, row in enumerate(read_jsonl(path), 1):
        if "messages" not in row:
            raise DataError("missing 'messages'", source=path, line=n, field="messages")
        messages = validate_messages(row["messages"], f"{path}:{n}")
        items.append(BuildItem(item_key(row, messages), messages, row))
    return items


def items_from_conversations(conversations: Sequence[dict[str, Any] | list[Message]]) -> list[BuildItem]:
    items = []
    for i, c in enumerate(conversations):
        row = c if isinstance(c, dict) else {"messages": c}
        messages = validate_messages(row.get("messages"), f"conversation {i}")
        items.append(BuildItem(item_key(row, messages), messages, row))
    return items


def _reactions(messages: list[Message]) -> list[int]:
    """Indices t of assistant answers that follow a user turn and are followed by a user turn."""
    return [t for t in range(1, len(messages) - 1)
            if messages[t]["role"] == "assistant" and messages[t - 1]["role"] == "user"
            and messages[t + 1]["role"] == "user"]


FEEDBACK_FORMATS = ("pairwise", "unpaired")


class FeedbackBuilder:
    """Mine pairwise or unpaired preferences from conversations (see the module docstring)."""

    name = "feedback"

    def __init__(self, classifier: FeedbackClassifier | None = None, fmt: str = "pairwise") -> None:
        if fmt not in FEEDBACK_FORMATS:
            raise ConfigError(f"feedback format must be one of {FEEDBACK_FORMATS}, got {fmt!r}")
        self.classifier = classifier or RuleBasedFeedbackClassifier()
        self.fmt = fmt

    def settings(self) -> dict[str, Any]:
        return {"classifier": self.classifier.name, "format": self.fmt}

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        turns, contexts, where = [], [], []
        for i, item in enumerate(items):
            for t in _reactions(item.prompt):
                turns.append(item.prompt[t + 1]["content"])
                contexts.append(item.prompt[:t + 1])
                where.append((i, t + 1))
        signals = self.classifier.classify(turns, contexts) if turns else []
        if len(signals) != len(turns):
            raise DataError(f"classifier '{self.classifier.name}' returned {len(signals)} signals for "
                            f"{len(turns)} turns")
        by_item: dict[int, dict[int, FeedbackSignal]] = {}
        for (i, u), s in zip(where, signals, strict=True):
            by_item.setdefault(i, {})[u] = s
        return [self._records(item, by_item.get(i, {})) for i, item in enumerate(items)]

    def _records(self, item: BuildItem, signals: dict[int, FeedbackSignal]) -> Outcome:
        messages: list[Message] = item.prompt
        skipped: Counter = Counter()
        if not signals:
            return Outcome(item.key, dropped="no_user_reaction")
        base = {"builder": self.name, "classifier": self.classifier.name}
        ident = item.source.get("id") if isinstance(item.source, dict) else None
        if ident is not None:
            base["conversation_id"] = ident
        pairs: list[Record] = []
        unpaired: list[Record] = []
        used_as_chosen: set[int] = set()
        for u, sig in sorted(signals.items()):
            t = u - 1  # the assistant answer this user turn reacts to
            prompt = messages[:t]
            meta = {**base, "turn": t, "signal": sig.label, "category": sig.category, "cue": sig.cue}
            skipped[f"signal:{sig.label}"] += 1
            if sig.category == "unparsed":
                skipped["classifier_unparsed"] += 1
            if sig.label == NEUTRAL:
                continue
            if sig.label == SAT:
                if t not in used_as_chosen:
                    unpaired.append(UnpairedExample(prompt, messages[t]["content"], True, meta))
                continue
            revised = t + 2
            if revised < len(messages) and messages[revised]["role"] == "assistant":
                after = signals.get(revised + 1)
                if after is None or after.label != DSAT:
                    pairs.append(PairwiseExample(prompt, chosen=messages[revised]["content"],
                                                 rejected=messages[t]["content"],
                                                 metadata={**meta, "chosen_turn": revised}))
                    used_as_chosen.add(revised)
                    if after is not None and after.label == SAT:
                        skipped["revision_confirmed_by_sat"] += 1
                    continue
                skipped["revision_also_rejected"] += 1
            unpaired.append(UnpairedExample(prompt, messages[t]["content"], False, meta))
        if self.fmt == "pairwise":
            records = pairs
            if unpaired:
                skipped["unpaired_signals_not_emitted"] += len(unpaired)
        else:
            records = list(unpaired)
            for p in pairs:
                assert isinstance(p, PairwiseExample)
                meta = {**p.metadata, "from_pair": True}
                records.append(UnpairedExample(p.prompt, p.chosen, True, {**meta, "turn": meta["chosen_turn"]}))
                records.append(UnpairedExample(p.prompt, p.rejected, False, meta))
        return Outcome(item.key, records, None if records else "no_preference_signal", dict(skipped))
