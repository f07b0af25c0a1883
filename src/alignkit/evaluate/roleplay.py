"""Role-play evaluation (WikiRoleEval, OFA-Sys/Ditto `eval/call_openai_api_gpt4_eval.py`, `scoring.py`; spec
../shared/spec/wave2_selfalign_merge.md §3 "Evaluation"): the policy answers each dialogue's user turns in order
under the record's system message, then a judge (any Sampler; the reference is gpt-4-1106-preview at T = 0.2,
n = 3) scores every (user, assistant) turn three ways:

1. consistency: which of 4 candidate names is the character? Turn score = mean over the parsable judge samples
   of [named = true role]; no parsable sample scores 0;
2. knowledge: 1–10 on the judge reply's last line, with the profile and the turn's evidence as tips; turn score =
   mean over the parsable samples (NaN when none, and the mean skips it);
3. rejection: "1" if the character refused, "0" otherwise (only those count); the majority over the samples (a
   tie goes to the first parsable reply) must equal the turn's label; with no parsable reply the turn is missing
   (the reference code raises).

The judge prompts are alignkit's paraphrases; pass others to `RoleplayJudgePrompts` for byte-exact wording.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.decode.sampler import Sampler

VERDICT = "Therefore, the character is:"  # the fixed closing sentence the consistency judge must end with


@dataclass
class RoleplayJudgePrompts:
    consistency: str = (
        "Below is one turn of a role-play dialogue. Which of these characters is the assistant playing? "
        "Candidates: {candidates}.\n\nUser: {user}\nAssistant: {assistant}\n\n"
        "Explain briefly, then end with the sentence \"" + VERDICT + " <name>\".")
    knowledge: str = (
        "Character profile:\n{profile}\n\nTips (facts relevant to this turn): {tips}\n\n"
        "User: {user}\nAssistant (playing {name}): {assistant}\n\n"
        "Rate from 1 to 10 how accurate and rich the character knowledge in the answer is. "
        "Put only the number on the last line.")
    rejection: str = (
        "User: {user}\nAssistant (playing {name}): {assistant}\n\n"
        "Did the assistant refuse to answer or say it does not know? Reply 1 for yes and 0 for no, nothing else.")


def parse_consistency(reply: str, candidates: Sequence[str]) -> str | None:
    """The candidate named after the last verdict sentence, or None (no sentence, or not one of the names)."""
    idx = reply.rfind(VERDICT)
    if idx < 0:
        return None
    named = reply[idx + len(VERDICT):].strip().strip(".\"'* ").strip()
    for c in candidates:
        if named.lower() == c.lower():
            return c
    return None


def parse_knowledge(reply: str) -> float | None:
    """The score on the reply's last non-empty line (a number in 1..10), else None."""
    lines = [x.strip() for x in reply.strip().splitlines() if x.strip()]
    if not lines:
        return None
    m = re.fullmatch(r"\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*\**\.?", lines[-1])
    if not m:
        return None
    value = float(m.group(1))
    return value if 1 <= value <= 10 else None


def parse_rejection(reply: str) -> int | None:
    """Only a reply that is exactly "0" or "1" (after stripping) counts."""
    text = reply.strip().strip(".")
    return int(text) if text in ("0", "1") else None


def consistency_turn(named: Sequence[str | None], true_name: str) -> float:
    parsed = [n for n in named if n is not None]
    return sum(n == true_name for n in parsed) / len(parsed) if parsed else 0.0


def knowledge_turn(scores: Sequence[float | None]) -> float | None:
    """The mean parsed score; None when no judge reply parsed (stored as JSON null, skipped by `aggregate`)."""
    parsed = [s for s in scores if s is not None]
    return sum(parsed) / len(parsed) if parsed else None


def rejection_vote(votes: Sequence[int | None]) -> int | None:
    """The majority of the parsable votes; a tie goes to the first parsable vote; None when none parsed."""
    parsed = [v for v in votes if v is not None]
    if not parsed:
        return None
    ones = sum(parsed)
    if 2 * ones == len(parsed):
        return parsed[0]
    return int(2 * ones > len(parsed))


def aggregate(turns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean consistency, knowledge (unparsed turns skipped) and rejection accuracy (missing turns skipped), overall and
    per language. Each turn: {"consistency", "knowledge", "rejection_vote", "rejection_label", "lang"}."""

    def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        know = [r["knowledge"] for r in rows if r["knowledge"] is not None]
        rej = [r for r in rows if r["rejection_vote"] is not None]
        return {"turns": len(rows),
                "consistency": sum(r["consistency"] for r in rows) / len(rows) if rows else None,
                "knowledge": sum(know) / len(know) if know else None,
                "rejection": sum(r["rejection_vote"] == r["rejection_label"] for r in rej) / len(rej) if rej
                else None,
                "rejection_missing": len(rows) - len(rej)}

    out = summary(turns)
    langs = sorted({r.get("lang", "en") for r in turns})
    if len(langs) > 1:
        out["by_lang"] = {lang: summary([r for r in turns if r.get("lang", "en") == lang]) for lang in langs}
    return out


def candidates_for(name: str, all_names: Sequence[str], k: int = 4, seed: int = 0) -> list[str]:
    """The true name and k − 1 others, shuffled (seeded by the name, so each record's list is stable)."""
    rng = random.Random(f"{seed}|{name}")
    others = [n for n in all_names if n != name]
    picked = [name, *rng.sample(others, min(k - 1, len(others)))]
    rng.shuffle(picked)
    return picked


def respond(policy: Sampler, dialogue: dict[str, Any], max_new_tokens: int = 160, seed: int = 0) -> list[str]:
    """The policy's answers to the dialogue's user turns in order, each conditioned on its own earlier answers."""
    messages = [m for m in dialogue["messages"] if m["role"] == "system"][:1]
    answers = []
    for t, user in enumerate(m["content"] for m in dialogue["messages"] if m["role"] == "user"):
        messages = [*messages, {"role": "user", "content": user}]
        reply = policy.sample([messages], n=1, max_new_tokens=max_new_tokens, temperature=0.0, seed=seed + t)
        answers.append(reply[0][0].text.strip())
        messages = [*messages, {"role": "assistant", "content": answers[-1]}]
    return answers


def roleplay_eval(policy: Sampler, judge: Sampler, dialogues: Sequence[dict[str, Any]],
                  profiles: dict[str, str], *, n: int = 3, temperature: float = 0.2, max_new_tokens: int = 160,
                  judge_max_new_tokens: int = 128, prompts: RoleplayJudgePrompts | None = None, seed: int = 0,
                  chat: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score the policy's answers on `dialogues` (records as `pipelines.ditto` writes them: messages with the
    system role config, `character`, `turn_meta` with `evidence` and `reject`) with n judge samples per query;
    returns the per-turn rows (judge replies included) and `aggregate` of them. An unparsable judge reply never
    raises: it counts as described in the module docstring. `chat`: judge prompts go as a user turn."""
    prompts = prompts or RoleplayJudgePrompts()
    names = sorted({d["character"] for d in dialogues})
    turns: list[dict[str, Any]] = []
    for d_idx, d in enumerate(dialogues):
        answers = respond(policy, d, max_new_tokens, seed + 100 * d_idx)
        users = [m["content"] for m in d["messages"] if m["role"] == "user"]
        cands = candidates_for(d["character"], names, seed=seed)
        for t, (user, answer, meta) in enumerate(zip(users, answers, d["turn_meta"], strict=True)):
            tips = "; ".join(f"{p}: {v}" for p, v in meta.get("evidence", [])) or "none"
            fields = {"user": user, "assistant": answer, "name": d["character"], "candidates": ", ".join(cands),
                      "profile": profiles.get(d["character"], ""), "tips": tips}
            asks = [prompts.consistency.format(**fields), prompts.knowledge.format(**fields),
                    prompts.rejection.format(**fields)]
            replies = judge.sample([[{"role": "user", "content": a}] if chat else a for a in asks], n=n, max_new_tokens=judge_max_new_tokens, temperature=temperature,
                                   seed=seed + 1000 * d_idx + t)
            texts = [[s.text for s in row] for row in replies]
            named = [parse_consistency(x, cands) for x in texts[0]]
            votes = [parse_rejection(x) for x in texts[2]]
            turns.append({"character": d["character"], "lang": d.get("lang", "en"), "user": user,
                          "assistant": answer, "consistency": consistency_turn(named, d["character"]),
                          "knowledge": knowledge_turn([parse_knowledge(x) for x in texts[1]]),
                          "rejection_vote": rejection_vote(votes), "rejection_label": int(meta.get("reject", 0)),
                          "judge_raw": {"consistency": texts[0], "knowledge": texts[1], "rejection": texts[2]}})
    return turns, aggregate(turns)
