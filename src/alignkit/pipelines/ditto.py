"""Ditto role-play self-alignment (Lu et al., arXiv 2401.12474; spec ../shared/spec/wave2_selfalign_merge.md §3):
the model reads a character's profile, writes the questions a user might ask that character and the character's
in-character answers (declining, in character, the questions built from *another* character's profile), and the
dialogues are assembled *without* the profile, so SFT teaches the model to recall the knowledge and keep the
identity on its own. The data-generation code was never released: prompts, counts and session lengths are the
spec's [design] defaults, all parameters of `DittoConfig`.

Character record (JSONL): `{"name", "aliases", "description", "claims": [[property, value], ...], "wiki_summary",
"lang", "category"}`. Training record: `{"messages": [system (role config: name + description, not the profile),
user, assistant, ...], "character", "turn_meta": [{"type": "knowledge"|"contrastive", "evidence", "reject"}]}`.
The evaluation (WikiRoleEval's three judges) is `alignkit.evaluate.roleplay`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.decode.sampler import Sampler
from alignkit.errors import DataError
from alignkit.safety.judges import REFUSAL_PHRASES, is_refusal

# In-character refusals rarely say "I cannot"; these openings count too (the contrastive-turn check) [design].
IN_CHARACTER_REFUSALS = REFUSAL_PHRASES + (
    "i'm afraid", "i am afraid", "i do not know", "i don't know", "i know nothing", "i have never heard",
    "i've never heard", "never heard of", "beyond my", "i could not say", "i couldn't say", "not something i know",
    "no idea", "i cannot say", "i can't say", "unfamiliar to me")

QUESTION_PROMPT = (
    "Here is a profile of {name}.\n{profile}\n\n"
    "Write one question that a user might ask {name} directly (addressing them as \"you\") about this fact: "
    "{property}. Do not state the answer in the question. Reply with the question only.")
CONTRASTIVE_PROMPT = (
    "Here is a profile of {other}.\n{profile}\n\n"
    "Write one question about this fact: {property} of {other}, phrased as a question a user might ask "
    "someone who lived in a different time or field. Do not state the answer. Reply with the question only.")
ANSWER_PROMPT = (
    "You are {name}. Here is your profile.\n{profile}\n\n"
    "Answer the user's question in the first person, in {name}'s own voice and style, in at most three "
    "sentences.{decline}\n\nUser: {question}")
DECLINE = (" The question is about something {name} could not know (another era or field): politely decline in "
           "character, saying you know nothing of it.")


@dataclass
class DittoConfig:
    characters: str = ""  # JSONL of character records
    knowledge_per_character: int = 6  # [design] 6 knowledge + 2 contrastive questions per character
    contrastive_per_character: int = 2
    min_turns: int = 3  # sessions of 3-8 turns [design]
    max_turns: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    question_max_new_tokens: int = 48
    answer_max_new_tokens: int = 160
    chat: bool = True  # send the simulation prompts as a user turn through the chat template (instruct models)
    question_prompt: str = QUESTION_PROMPT
    contrastive_prompt: str = CONTRASTIVE_PROMPT
    answer_prompt: str = ANSWER_PROMPT


def read_characters(path: str) -> list[dict[str, Any]]:
    """Character records; a missing name or malformed claims is an error naming FILE:LINE:field."""
    if not path:
        raise DataError("ditto.characters is not set: give a JSONL of character records")
    out = []
    for n, row in iter_jsonl_rows(path):  # blank lines skipped; a bad line is a DataError naming FILE:LINE
        if isinstance(row, DataError):
            raise row
        if not str(row.get("name") or "").strip():
            raise DataError(f"{path}:{n}:name: a character needs a non-empty name")
        claims = row.get("claims") or []
        if not isinstance(claims, list) or not all(isinstance(c, list | tuple) and len(c) == 2 and
                                                    all(str(x).strip() for x in c) for c in claims):
            raise DataError(f"{path}:{n}:claims: expected a list of [property, value] pairs")
        if not claims:
            raise DataError(f"{path}:{n}:claims: a character needs at least one claim to ask about")
        out.append({**row, "claims": [[str(p).strip(), str(v).strip()] for p, v in claims]})
    if len(out) < 2:
        raise DataError(f"{path}: contrastive questions need at least two characters, found {len(out)}")
    return out


def render_profile(ch: dict[str, Any]) -> str:
    """The character knowledge shown to the simulator: description, `property: value` claims, summary."""
    lines = [f"{ch['name']}: {ch.get('description', '')}".rstrip(": ")]
    lines += [f"{p}: {v}" for p, v in ch["claims"]]
    if ch.get("wiki_summary"):
        lines.append(str(ch["wiki_summary"]))
    return "\n".join(lines)


def role_config(ch: dict[str, Any]) -> str:
    """The training system message: name and one-line description only (training removes the profile)."""
    desc = str(ch.get("description") or "").strip()
    return f"You are {ch['name']}{', ' + desc if desc else ''}. Stay in character."


def leaks(text: str, ch: dict[str, Any], evidence: Sequence[Sequence[str]] = ()) -> bool:
    """Whether `text` quotes the profile: a rendered claim line, the summary, or an evidence value."""
    low = text.lower()
    pieces = [f"{p}: {v}" for p, v in ch["claims"]] + [v for _, v in evidence]
    if ch.get("wiki_summary"):
        pieces.append(str(ch["wiki_summary"]))
    return any(piece.strip() and piece.strip().lower() in low for piece in pieces)


def _wrap(text: str, chat: bool) -> Any:
    return [{"role": "user", "content": text}] if chat else text


def _first_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[0].strip('"') if lines else ""


def plan_questions(characters: Sequence[dict[str, Any]], cfg: DittoConfig, seed: int) -> list[dict[str, Any]]:
    """Which claim each question is about: knowledge claims of the character itself, contrastive claims of
    another character (seeded, deterministic)."""
    plan = []
    for i, ch in enumerate(characters):
        rng = random.Random(f"{seed}|{i}|{ch['name']}")
        for claim in rng.sample(ch["claims"], min(cfg.knowledge_per_character, len(ch["claims"]))):
            plan.append({"char": i, "type": "knowledge", "evidence": [claim], "reject": 0, "source": i})
        others = [j for j in range(len(characters)) if j != i]
        for _ in range(cfg.contrastive_per_character):
            j = rng.choice(others)
            plan.append({"char": i, "type": "contrastive", "evidence": [rng.choice(characters[j]["claims"])],
                         "reject": 1, "source": j})
    return plan


def simulate(sampler: Sampler, characters: Sequence[dict[str, Any]], cfg: DittoConfig, seed: int
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter]:
    """Query then response simulation by one model; returns (dialogue records, every simulated turn with its
    drop reason, drop counts)."""
    plan = plan_questions(characters, cfg, seed)
    asks = []
    for q in plan:
        src = characters[q["source"]]
        template = cfg.question_prompt if q["type"] == "knowledge" else cfg.contrastive_prompt
        asks.append(template.format(name=characters[q["char"]]["name"], other=src["name"],
                                    profile=render_profile(src), property=q["evidence"][0][0]))
    questions = sampler.sample([_wrap(a, cfg.chat) for a in asks], n=1, max_new_tokens=cfg.question_max_new_tokens,
                               temperature=cfg.temperature, top_p=cfg.top_p, seed=seed) if asks else []
    for q, row in zip(plan, questions, strict=True):
        q["question"] = _first_line(row[0].text)
    live = [q for q in plan if q["question"]]
    answers = sampler.sample([_wrap(cfg.answer_prompt.format(
        name=characters[q["char"]]["name"], profile=render_profile(characters[q["char"]]), question=q["question"],
        decline=DECLINE.format(name=characters[q["char"]]["name"]) if q["reject"] else ""), cfg.chat) for q in live],
        n=1, max_new_tokens=cfg.answer_max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        seed=seed + 1) if live else []
    for q, row in zip(live, answers, strict=True):
        q["answer"] = row[0].text.strip()
    drops: Counter = Counter()
    for q in plan:
        ch = characters[q["char"]]
        reason = None
        if not q["question"]:
            reason = "empty_question"
        elif leaks(q["question"], ch, q["evidence"] if q["type"] == "knowledge" else ()):
            reason = "question_quotes_profile"
        elif not q.get("answer"):
            reason = "empty_answer"
        elif q["reject"] and not is_refusal(q["answer"], IN_CHARACTER_REFUSALS):
            reason = "contrastive_not_refused"
        q["drop_reason"] = reason
        if reason:
            drops[reason] += 1
    return assemble(characters, [q for q in plan if not q["drop_reason"]], cfg, seed), plan, drops


def assemble(characters: Sequence[dict[str, Any]], turns: Sequence[dict[str, Any]], cfg: DittoConfig, seed: int
             ) -> list[dict[str, Any]]:
    """Shuffle each character's turns (seeded) into sessions of min_turns..max_turns turns; a remainder shorter
    than min_turns joins the previous session when that stays within max_turns."""
    out = []
    for i, ch in enumerate(characters):
        mine = [t for t in turns if t["char"] == i]
        rng = random.Random(f"{seed}|assemble|{i}")
        rng.shuffle(mine)
        sessions: list[list[dict[str, Any]]] = []
        while mine:
            size = rng.randint(cfg.min_turns, cfg.max_turns)
            sessions.append(mine[:size])
            mine = mine[size:]
        if len(sessions) > 1 and len(sessions[-1]) < cfg.min_turns and \
                len(sessions[-2]) + len(sessions[-1]) <= cfg.max_turns:
            tail = sessions.pop()  # (`sessions[-2] += sessions.pop()` would write to the wrong index)
            sessions[-1] += tail
        for s in sessions:
            messages = [{"role": "system", "content": role_config(ch)}]
            for t in s:
                messages += [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": t["answer"]}]
            out.append({"messages": messages, "character": ch["name"], "lang": ch.get("lang", "en"),
                        "turn_meta": [{"type": t["type"], "evidence": t["evidence"], "reject": t["reject"]}
                                      for t in s]})
    return out


def turn_records(dialogues: Sequence[dict[str, Any]]) -> list[Any]:
    """One SFT record per assistant turn (prompt = the dialogue up to that user turn, completion = the answer),
    so the loss covers every assistant turn and nothing else."""
    from alignkit.data.records import SFTExample

    out = []
    for d_idx, d in enumerate(dialogues):
        msgs, t = d["messages"], 0
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            out.append(SFTExample(prompt=[dict(x) for x in msgs[:i]], completion=m["content"], metadata={
                "character": d["character"], "dialogue": d_idx, "turn": t, **d["turn_meta"][t]}))
            t += 1
    return out


def build_round(out: Path, sampler: Sampler, characters: Sequence[dict[str, Any]], cfg: DittoConfig, *,
                iteration: int, source_model: str, seed: int) -> dict[str, Any]:
    """Simulate the dialogues with `sampler` and write `generated.jsonl` (every planned turn with its drop reason),
    `dialogues.jsonl` (the spec's training records) and `kept.jsonl` (one SFT record per assistant turn)."""
    from alignkit.data.io import write_records
    from alignkit.data.readers.jsonl import write_jsonl

    dialogues, turns, drops = simulate(sampler, characters, cfg, seed)
    for t in turns:
        t.update(iteration=iteration, source_model=source_model, character=characters[t["char"]]["name"])
    write_jsonl(out / "generated.jsonl", turns)
    write_jsonl(out / "dialogues.jsonl", [{**d, "iteration": iteration, "source_model": source_model}
                                          for d in dialogues])
    records = turn_records(dialogues)
    write_records(out / "kept.jsonl", records)
    return {"source_model": source_model, "planned_turns": len(turns), "kept": len(records),
            "dialogues": len(dialogues), "dropped": dict(drops),
            "keep_rate": len(records) / len(turns) if turns else 0.0}


def answer_nll(sampler: Sampler, dialogues: Sequence[dict[str, Any]]) -> float | None:
    """Mean-token NLL of the dialogues' assistant answers (teacher-forced, each turn after its own context)."""
    records = turn_records(dialogues)
    if not records:
        return None
    lps = sampler.score_logprobs([r.prompt for r in records], [r.completion for r in records])
    tokens = [x for row in lps for x in row]
    return -sum(tokens) / len(tokens) if tokens else None
