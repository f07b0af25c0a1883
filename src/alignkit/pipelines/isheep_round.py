"""One I-SHEEP round's data (spec ../shared/spec/wave2_selfalign_merge.md §1, steps 1–5): the current model writes
instructions from seed tasks, answers them, grades its own pairs twice (quality, following), and the pairs with
both scores above the threshold become the round's SFT set. Everything goes through the Sampler protocol, so the
generator and the judge can be any model (or a scripted one in tests).

Files written into the round's data directory:

* `generated.jsonl`: every synthesized item that reached response generation, with `drop_reason` (None = kept),
  its scores and `source_model` (the model that wrote it);
* `judge.jsonl`: the raw self-assessment replies (`kind` = quality | following, `text`, parsed `score`);
* `kept.jsonl`: the SFT records (`prompt` = instruction + input, `completion` = output, provenance columns
  `iteration`, `quality_score`, `following_score`, `judge_raw`, `judge_model`, `source_model`).

The prompt wording is alignkit's paraphrase of the repository's (`seed_ppl/prompt.txt`, `evaluate_prompt_parameters
.py`); pass other templates through `ISheepConfig` to reproduce byte-exact wording.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.decode.sampler import Sampler
from alignkit.errors import DataError
from alignkit.pipelines.isheep import RuleFilter, dedup, instruction_drop_reason, keep_pair, parse_score

META_PROMPT = (
    "You are asked to come up with a set of 20 diverse task instructions. These task instructions will be given "
    "to a language model and we will evaluate the language model for completing the instructions.\n\n"
    "Here are the requirements:\n"
    "1. Try not to repeat the verb for each instruction to maximize diversity.\n"
    "2. The language used for the instruction also should be diverse.\n"
    "3. The type of instructions should be diverse: open-ended generation, classification, editing, and more.\n"
    "4. A language model should be able to complete the instruction (no images, audio or actions in the world).\n"
    "5. The instructions should be in English.\n"
    "6. The instructions should be 1 to 2 sentences long.\n"
    "7. Generate an appropriate input for the instruction when it needs one; otherwise write \"<noinput>\".\n"
    "8. The input should be realistic and substantial, not a placeholder.\n"
    "9. The output should be an appropriate response to the instruction and the input, under 100 words.\n\n"
    "List of 20 tasks:\n")
QUALITY_PROMPT = (
    "You are a strict expert judge. Rate the quality of the response to the instruction on a scale of 1 to 10: "
    "1 means wrong, long, unclear or redundant; 10 means correct, succinct, clear and non-redundant.\n\n"
    "Instruction: {instruction}\nResponse: {output}\n\n"
    "Reply in the format <score>||<explanation>.")
FOLLOWING_PROMPT = (
    "You are a strict expert judge. Rate how well the response follows the instruction on a scale of 1 to 10: "
    "1 means the response continues the instruction instead of answering it, ignores the required format, or the "
    "instruction is ambiguous; 10 means it answers directly, follows the format, and the instruction is clear.\n\n"
    "Instruction: {instruction}\nResponse: {output}\n\n"
    "Reply in the format <score>||<explanation>.")
SYSTEM = "You are a helpful assistant."
_ITEM = re.compile(r"^\s*(\d+)\s*\.\s*Instruction:(.*?)\n\s*\1\s*\.\s*Input:(.*)$", re.S)


@dataclass
class ISheepConfig:
    """I-SHEEP settings (spec §1); defaults are the repository's unless marked [design]/[uncertain] there."""

    seeds: str = ""  # JSONL with `instruction`, `input`, `output` (the Alpaca/Self-Instruct seed tasks)
    n_instructions: int = 10000  # synthesize until more than this many instructions survive dedup
    request_batch_size: int = 32  # meta-prompts per synthesis call
    seeds_per_prompt: int = 5
    max_synthesis_batches: int = 100  # [design] stop synthesizing after this many calls even if short of the target
    max_similarity: float = 0.7  # ROUGE-L dedup bound
    threshold: float = 8  # keep iff quality > C and following > C (a float for score_mode=logprob)
    judge: Literal["current", "base"] = "current"  # paper: M_i judges; released script: M_0 [design default]
    strict_rules: bool = True  # False leaves out the two over-broad output rules [design]
    train_from: Literal["base", "previous"] = "base"  # LoRA from M_0 each round (the code's loop)
    data: Literal["latest", "cumulative"] = "latest"
    prompt_format: Literal["auto", "raw", "chat"] = "auto"  # auto: raw for round 1 (base model), chat after
    temperature: float = 1.0
    top_p: float = 0.95
    synth_max_new_tokens: int = 1000
    answer_max_new_tokens: int = 1000
    judge_max_new_tokens: int = 64
    # [design] "generate": parse the judge's reply (the paper); "logprob": the expected score under the judge's
    # probabilities of the answers "1".."10" (teacher-forced, renormalised over the ten), for a judge too weak to
    # keep the reply format; the threshold then compares that expectation
    score_mode: Literal["generate", "logprob"] = "generate"
    meta_prompt: str = META_PROMPT
    quality_prompt: str = QUALITY_PROMPT
    following_prompt: str = FOLLOWING_PROMPT


def expected_scores(judge: Sampler, prompts: list[Any]) -> list[float]:
    """Σ_s s·p(s) over s = 1..10, p the judge's teacher-forced probability of replying `s`, renormalised."""
    if not prompts:
        return []
    values = list(range(1, 11))
    lp = judge.score_logprobs([p for p in prompts for _ in values], [str(v) for _ in prompts for v in values])
    out = []
    for i in range(len(prompts)):
        logps = [sum(lp[i * len(values) + j]) for j in range(len(values))]
        top = max(logps)
        w = [math.exp(x - top) for x in logps]
        out.append(sum(v * x for v, x in zip(values, w, strict=True)) / sum(w))
    return out


def read_seeds(path: str) -> list[dict[str, str]]:
    """Seed tasks; a row without a non-empty `instruction` is an error naming FILE:LINE."""
    if not path:
        raise DataError("isheep.seeds is not set: give a JSONL of seed tasks ({\"instruction\", \"input\", "
                        "\"output\"})")
    rows = []
    for n, row in iter_jsonl_rows(path):  # blank lines skipped; a bad line is a DataError naming FILE:LINE
        if isinstance(row, DataError):
            raise row
        if not str(row.get("instruction") or "").strip():
            raise DataError(f"{path}:{n}:instruction: a seed task needs a non-empty instruction")
        rows.append({"instruction": str(row["instruction"]).strip(), "input": str(row.get("input") or "").strip(),
                     "output": str(row.get("output") or "").strip()})
    if not rows:
        raise DataError(f"{path}: holds no seed tasks")
    return rows


def synthesis_prompt(seeds: Sequence[dict[str, str]], meta: str = META_PROMPT) -> str:
    """The meta-prompt, then the seed tasks as a numbered `###`-separated list ending in the next item's opening
    (`6. Instruction:` for five seeds)."""
    parts = [f"{i}. Instruction: {s['instruction']}\n{i}. Input:\n{s['input']}" for i, s in enumerate(seeds, 1)]
    return meta + "###\n" + "\n###\n".join(parts) + f"\n###\n{len(seeds) + 1}. Instruction:"


def parse_synthesized(completion: str, first: int = 6) -> list[tuple[str, str]]:
    """(instruction, input) items numbered ≥ `first` from a synthesis completion (which continues after
    "`first`. Instruction:"); the last `###` chunk is dropped (possibly truncated), as is any chunk that is not
    exactly "k. Instruction: … k. Input: …"."""
    chunks = re.split(r"\n?\s*###\s*\n?", f"{first}. Instruction:" + completion)
    out = []
    for chunk in chunks[:-1]:
        m = _ITEM.match(chunk.strip("\n"))
        if m and int(m.group(1)) >= first:
            out.append((m.group(2).strip(), m.group(3).strip()))
    return out


def _format(prompt: str, chat: bool) -> Any:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}] if chat else prompt


def synthesize(sampler: Sampler, seeds: list[dict[str, str]], cfg: ISheepConfig, rng: random.Random, seed: int
               ) -> tuple[list[dict[str, Any]], Counter]:
    """Step 1: instructions until more than `n_instructions` survive the filters and the dedup (or the batch
    cap is reached); returns the kept items in order and the drop counts."""
    seed_texts = [s["instruction"] for s in seeds]
    kept: list[dict[str, Any]] = []
    drops: Counter = Counter()
    k = min(cfg.seeds_per_prompt, len(seeds))
    for batch in range(cfg.max_synthesis_batches):
        if len(kept) > cfg.n_instructions:
            break
        prompts = [synthesis_prompt(rng.sample(seeds, k), cfg.meta_prompt) for _ in range(cfg.request_batch_size)]
        rows = sampler.sample(prompts, n=1, max_new_tokens=cfg.synth_max_new_tokens, temperature=cfg.temperature,
                              top_p=cfg.top_p, stop=["17"], seed=seed + batch)
        for row in rows:
            for instruction, input_text in parse_synthesized(row[0].text, first=k + 1):
                reason = instruction_drop_reason(instruction, input_text)
                if reason:
                    drops[reason] += 1
                    continue
                survived = dedup([instruction], seed_texts + [x["instruction"] for x in kept], cfg.max_similarity)
                if not survived:
                    drops["similar"] += 1
                    continue
                kept.append({"instruction": instruction, "input": input_text,
                             "avg_similarity_score": survived[0][1]})
    return kept[: cfg.n_instructions + 1], drops


def build_round(out: Path, generator: Sampler, judge: Sampler, seeds: list[dict[str, str]], cfg: ISheepConfig,
                *, iteration: int, source_model: str, judge_model: str, seed: int) -> dict[str, Any]:
    """Steps 1–5 of one round; writes the three files into `out` and returns the round's counts."""
    from alignkit.data.io import write_records
    from alignkit.data.readers.jsonl import write_jsonl
    from alignkit.data.records import SFTExample

    chat = cfg.prompt_format == "chat" or (cfg.prompt_format == "auto" and iteration > 1)
    items, drops = synthesize(generator, seeds, cfg, random.Random(seed), seed)
    answers = generator.sample([_format(i["instruction"] + i["input"] + ("" if chat else "\n"), chat)
                                for i in items], n=1, max_new_tokens=cfg.answer_max_new_tokens,
                               temperature=cfg.temperature, top_p=cfg.top_p, seed=seed + 10_000) if items else []
    rules = RuleFilter(strict=cfg.strict_rules)
    judged: list[dict[str, Any]] = []
    for item, row in zip(items, answers, strict=True):
        output, reason = rules.check(item["instruction"], item["input"], row[0].text)
        item.update(output=output, drop_reason=reason, source_model=source_model, iteration=iteration)
        if reason is None:
            judged.append(item)
    judge_rows: list[dict[str, Any]] = []
    for kind, template in (("quality", cfg.quality_prompt), ("following", cfg.following_prompt)):
        prompts = [_format(template.format(instruction=(i["instruction"] + "\n" + i["input"]).strip(),
                                           output=i["output"]), chat) for i in judged]
        if cfg.score_mode == "logprob":
            scored = [(f"expected score {v:.3f} (log-prob mode)", v) for v in expected_scores(judge, prompts)]
        else:
            replies = judge.sample(prompts, n=1, max_new_tokens=cfg.judge_max_new_tokens,
                                   temperature=cfg.temperature, top_p=cfg.top_p,
                                   seed=seed + (20_000 if kind == "quality" else 30_000)) if judged else []
            scored = [(r[0].text, parse_score(r[0].text)) for r in replies]
        for item, (text, score) in zip(judged, scored, strict=True):
            item[f"{kind}_score"] = score
            item.setdefault("judge_raw", {})[kind] = text
            judge_rows.append({"instruction": item["instruction"], "input": item["input"], "kind": kind,
                               "text": text, "score": score, "judge_model": judge_model})
    kept = []
    for item in judged:
        q, f = item["quality_score"], item["following_score"]
        if q < 0 or f < 0:
            item["drop_reason"] = "unparsed_score"
        elif not keep_pair(q, f, cfg.threshold):
            item["drop_reason"] = "below_threshold"
        else:
            kept.append(SFTExample(prompt=item["instruction"] + item["input"], completion=item["output"], metadata={
                "iteration": iteration, "quality_score": q, "following_score": f, "judge_raw": item["judge_raw"],
                "judge_model": judge_model, "source_model": source_model}))
    write_jsonl(out / "generated.jsonl", items)
    write_jsonl(out / "judge.jsonl", judge_rows)
    write_records(out / "kept.jsonl", kept)
    reasons = Counter(i["drop_reason"] for i in items if i["drop_reason"])
    return {"source_model": source_model, "judge_model": judge_model, "instructions": len(items),
            "synthesis_drops": dict(drops), "rule_drops": dict(rules.counts), "judged": len(judged),
            "kept": len(kept), "keep_rate": len(kept) / len(judged) if judged else 0.0,
            "dropped": dict(reasons),
            "mean_quality": _mean([i["quality_score"] for i in judged if i["quality_score"] > 0]),
            "mean_following": _mean([i["following_score"] for i in judged if i["following_score"] > 0])}


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
