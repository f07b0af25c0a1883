"""PAS for one user's questionnaire (spec ../shared/spec/wave2_selfalign_merge.md §4): the prompts, the
user-independent activation cache, the persona prompt and `pas_search`, which fits the heads on the user's known
items minus a stratified held-out part, picks α on that held-out part, and reports the per-trait MAE on the test
items only afterwards (the reference code selects α on the test items it reports; alignkit does not).

Item bank (JSONL): `{"id", "text", "trait" (O|C|E|A|N), "key" ("+"|"-"), "facet"?}`. User (JSON or one JSONL
line): `{"user_id", "answers": {item_id: 1..5, 0 = unknown}, "train_items": [...], "test_items": [...]}`. Prompt
wording is alignkit's paraphrase of PAlign's; `ITEM_PROMPT`/`S0` are parameters of `pas_search`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.decode.pas import ALPHAS, holdout_split, search_alpha, trait_mae
from alignkit.decode.pas_heads import PASArtifact, build_artifact, capture_heads, pas_steering
from alignkit.errors import DataError

S0 = "You are a helpful, honest and concise assistant."
ITEM_PROMPT = ("Given a statement about you: \"You {text}.\" Choose how accurately it describes you.\n"
               "Options:\n(A). Very Accurate\n(B). Moderately Accurate\n(C). Neither Accurate Nor Inaccurate\n"
               "(D). Moderately Inaccurate\n(E). Very Inaccurate\nAnswer with one option.")
LETTERS = "ABCDE"  # A = 5 ... E = 1
ANSWER_TEXT = {5: "Very Accurate", 4: "Moderately Accurate", 3: "Neither Accurate Nor Inaccurate",
               2: "Moderately Inaccurate", 1: "Very Inaccurate"}
TRAITS = ("O", "C", "E", "A", "N")


def read_bank(path: str | Path) -> dict[str, dict[str, Any]]:
    """Items by id; a bad row is an error naming FILE:LINE:field."""
    bank: dict[str, dict[str, Any]] = {}
    for n, row in iter_jsonl_rows(path):  # blank lines skipped; a bad line is a DataError naming FILE:LINE
        if isinstance(row, DataError):
            raise row
        for field, ok in (("id", bool(str(row.get("id", "")).strip())), ("text", bool(str(row.get("text", "")).strip())),
                          ("trait", row.get("trait") in TRAITS), ("key", row.get("key", "+") in ("+", "-"))):
            if not ok:
                raise DataError(f"{path}:{n}:{field}: invalid or missing (trait one of {TRAITS}, key '+' or '-')")
        bank[str(row["id"])] = {**row, "id": str(row["id"])}
    if not bank:
        raise DataError(f"{path}: holds no items")
    return bank


def read_user(path: str | Path, bank: Mapping[str, Any]) -> dict[str, Any]:
    """One user; every listed item must be in the bank, answers in 0..5, train and test disjoint."""
    text = Path(path).read_text(encoding="utf-8").strip()
    try:
        user = json.loads(text.splitlines()[0] if text.startswith("{") and "\n" in text else text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:1: not JSON ({e.msg})") from e
    for field in ("answers", "train_items", "test_items"):
        if field not in user:
            raise DataError(f"{path}:1:{field}: missing")
    answers = {str(k): int(v) for k, v in user["answers"].items()}
    bad = [k for k, v in answers.items() if not 0 <= v <= 5]
    if bad:
        raise DataError(f"{path}:1:answers: values must be 0..5 (0 = unknown); bad items {bad[:5]}")
    train, test = [str(i) for i in user["train_items"]], [str(i) for i in user["test_items"]]
    unknown = [i for i in train + test if i not in bank]
    if unknown:
        raise DataError(f"{path}:1:train_items: items not in the bank: {unknown[:5]}")
    if set(train) & set(test):
        raise DataError(f"{path}:1:test_items: overlaps train_items ({sorted(set(train) & set(test))[:5]})")
    return {**user, "answers": answers, "train_items": train, "test_items": test}


def parse_option(text: str) -> int | None:
    """An option letter → score (A = 5 … E = 1): `(B)` / `B)` first [design], else the code's rule (a letter a–e
    followed by a non-letter within the first 12 characters)."""
    m = re.search(r"\(?([A-E])\)", text)
    if not m:
        m = re.search(r"([a-eA-E])[^a-zA-Z]", text[:12] + " ")
    return 5 - LETTERS.index(m.group(1).upper()) if m else None


def persona_system(bank: Mapping[str, Any], answers: Mapping[str, int], items: Sequence[str]) -> str:
    """The system message listing the user's known answers as text (PAS = persona prompt + steering)."""
    lines = [f"You {bank[i]['text']}: {ANSWER_TEXT[answers[i]]}" for i in items if answers.get(i, 0) in ANSWER_TEXT]
    return "Here is how you described yourself:\n" + "\n".join(lines)


def _chat(tokenizer: Any, system: str, user: str) -> str:
    return tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": user}],
                                         tokenize=False, add_generation_prompt=True)


class HeadCache:
    """User-independent activations: the A and E sequences of each item under S_0, captured once per item."""

    def __init__(self, model: Any, tokenizer: Any, bank: Mapping[str, Any], item_prompt: str = ITEM_PROMPT,
                 system: str = S0) -> None:
        self.model, self.tokenizer, self.bank = model, tokenizer, bank
        self.item_prompt, self.system = item_prompt, system
        self.acts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.forwards = 0

    def get(self, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [i for i in items if i not in self.acts]
        if missing:
            texts = []
            for i in missing:
                base = _chat(self.tokenizer, self.system, self.item_prompt.format(text=self.bank[i]["text"]))
                texts += [base + "Option A", base + "Option E"]
            acts = capture_heads(self.model, self.tokenizer, texts)
            self.forwards += len(texts)
            for j, i in enumerate(missing):
                self.acts[i] = (acts[2 * j], acts[2 * j + 1])
        return np.stack([self.acts[i][0] for i in items]), np.stack([self.acts[i][1] for i in items])


def answer_items(sampler: Any, system: str, bank: Mapping[str, Any], items: Sequence[str], art: PASArtifact | None,
                 alpha: float, item_prompt: str = ITEM_PROMPT, max_new_tokens: int = 15) -> list[int | None]:
    """Greedy answers (scores 1..5 or None) with the assistant turn pre-filled with "Option"."""
    prompts = [[{"role": "system", "content": system}, {"role": "user", "content": item_prompt.format(
        text=bank[i]["text"])}] for i in items]
    with pas_steering(sampler.model, art, alpha) if art is not None else contextlib.nullcontext():
        out = sampler.extend(prompts, ["Option"] * len(prompts), max_new_tokens=max_new_tokens, temperature=0.0)
    return [parse_option(s.text) for s in out]


def _by_trait(bank: Mapping[str, Any], items: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in items:
        out.setdefault(bank[i]["trait"], []).append(i)
    return out


def pas_search(sampler: Any, bank: Mapping[str, Any], user: Mapping[str, Any], *, k: int = 24,
               alphas: Sequence[float] = ALPHAS, holdout: float = 0.2, seed: int = 0, cache: HeadCache | None = None,
               item_prompt: str = ITEM_PROMPT) -> tuple[PASArtifact, dict[str, Any]]:
    """Fit PAS for `user` on `sampler` (an HFSampler: its model is steered); returns the artefact with α* and a
    report (the α table on the held-out train items, then the test-item MAE per trait at α* and at α = 0)."""
    answers = user["answers"]
    known = [i for i in user["train_items"] if answers.get(i, 0) != 0]
    fit, held = holdout_split(_by_trait(bank, known), holdout, seed)
    cache = cache or HeadCache(sampler.model, sampler.tokenizer, bank, item_prompt)
    acts_a, acts_e = cache.get(fit)
    art = build_artifact(acts_a, acts_e, [answers[i] for i in fit], k=k, seed=seed)
    system = persona_system(bank, answers, fit)
    held_by = _by_trait(bank, held)
    truth = {t: [float(answers[i]) for i in ids] for t, ids in held_by.items()}

    def answer(alpha: float) -> dict[str, list[float | None]]:
        got = dict(zip(held, answer_items(sampler, system, bank, held, art, alpha, item_prompt), strict=True))
        return {t: [got[i] for i in ids] for t, ids in held_by.items()}

    art.alpha, table = search_alpha(answer, truth, alphas)
    report: dict[str, Any] = {"user_id": user.get("user_id"), "fit_items": fit, "alpha_items": held,
                              "alpha_table": table, "alpha": art.alpha, "heads": art.heads}
    test = [i for i in user["test_items"] if answers.get(i, 0) != 0]
    if test:  # read only now: the choice above never saw a test answer
        test_by = _by_trait(bank, test)
        test_truth = {t: [float(answers[i]) for i in ids] for t, ids in test_by.items()}
        for name, a in (("test_mae_sum", art.alpha), ("test_mae_sum_alpha0", 0.0)):
            got = dict(zip(test, answer_items(sampler, system, bank, test, art, a, item_prompt), strict=True))
            report[name] = trait_mae({t: [got[i] for i in ids] for t, ids in test_by.items()}, test_truth)
    return art, report
