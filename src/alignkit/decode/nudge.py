"""Nudging: a small aligned model writes the tokens where a large base model is uncertain (spec A4).

Fei, Razeghi, Singh, "Nudging: Inference-time Alignment via Model Collaboration" (arXiv 2410.09300; ACL 2025).
Loop as `fywalter/nudging` `completion_with_nudging` (A4.1), exchanging **words** so tokenizers may differ:

    repeat up to max_rounds while tokens(output) < max_tokens:
      N_text = nudger.continue(output, 16 tokens, greedy); if the nudger finished: output += N_text; stop
      words = N_text split on spaces (leading spaces kept on each piece); words[0] is always accepted
      for j = 1..: B = base.continue(output + words[:j], 16 tokens, greedy)
                   if words[j] starts with B's first token (B agrees) or B's top-1 prob ≥ γ: accept words[:j]; stop
      if never stopped: accept all but the (possibly truncated) last word; next round
      output += accepted words (3 identical accepted chunks in a row -> stop "repeated_nudging_words")
      base stage: accept B's first token, then B's tokens while their top-1 prob ≥ γ, asking for further 16-token
      chunks as needed; stop at the first uncertain token, at EOS, on a repeated chunk or at the length limit.
    post-process: drop back-to-back repeats (≥ 30 chars) at the end.

"B's first token" is its text *in context*: decode(context + [t]) minus decode(context), with the context
tokenized by the base itself. Decoding the token alone is not tokenizer-independent: SentencePiece/Metaspace
decoders (Llama-2, Gemma: the paper's own base models) drop a word-initial space ("▁the" alone decodes to "the"),
so " the".startswith("the") is never true and control would never be handed back (issue #13.3). Base text
appended to the output is decoded in context for the same reason (else "The" + "cat" loses the space).

The uncertainty test is always the base's *max* next-token probability (raw model, temperature 1), here read from
greedy `token_logprobs` (greedy token = top-1). Both models decode greedily, as the paper. Defaults: γ = 0.3
(argparse default; the paper uses 0.4 for Llama-2, 0.3 for Gemma-2/OLMo), chunk 16, max_tokens 512 (counted
with the base tokenizer; the original counts GPT-3.5 tiktoken tokens), max_rounds 150.
Prompts: the base sees plain text `"{system}\\n{question}\\n{answer_start}"` (raw sampler); the nudger sees its own
chat template with the same system prompt and question, and the answer start as the prefix (`nudging_prompts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.data.records import Prompt, prompt_text
from alignkit.decode.common import StrategyResult
from alignkit.decode.sampler import Compute, Sample, Sampler, TokenSampler
from alignkit.errors import ConfigError


@dataclass(frozen=True)
class NudgingPrompt:
    base: str  # plain text for the base model
    nudger: Prompt  # chat for the nudging model
    answer_start: str = ""


def nudging_prompts(question: Prompt, system: str = "", answer_start: str = "") -> NudgingPrompt:
    q = prompt_text(question)
    base = "\n".join(x for x in (system, q) if x) + "\n" + answer_start
    chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
    return NudgingPrompt(base, chat, answer_start)


def split_words(text: str) -> list[str]:
    """Space-delimited pieces, each keeping its leading space(s): "  a b" -> ["  a", " b"]; joining gives text."""
    lead = text[:len(text) - len(text.lstrip(" "))]
    parts = text.lstrip(" ").split(" ")
    return [lead + parts[0]] + [" " + p for p in parts[1:]]


def remove_repeated_suffix(text: str, min_len: int = 30) -> str:
    """Drop back-to-back repeats of a ≥ min_len chunk at the end of text."""
    changed = True
    while changed:
        changed = False
        for size in range(len(text) // 2, min_len - 1, -1):
            if text[-size:] == text[-2 * size:-size]:
                text = text[:-size]
                changed = True
                break
    return text


def _top1(sample_logprobs: list[float], k: int) -> float:
    return math.exp(sample_logprobs[k])


def continuation_text(base: TokenSampler, context: str, token_ids: Sequence[int]) -> str:
    """The text `token_ids` add after `context`, decoded in context (see the module docstring): the base's own
    tokenization of the context, decode(context_ids + token_ids) with decode(context_ids) cut off the front."""
    if not token_ids:
        return ""
    pre = list(base.tokenize(context)) if context else []  # type: ignore[attr-defined]
    head = base.decode(pre)
    full = base.decode(pre + list(token_ids))
    if not full.startswith(head):  # a decoder that rewrites earlier text: fall back to a token-alone decode
        return base.decode(list(token_ids))
    return full[len(head):]


def nudge(base: TokenSampler, nudger: Sampler, prompts: Sequence[Prompt], *, gamma: float = 0.3, chunk: int = 16,
          max_tokens: int = 512, max_rounds: int = 150, system: str = "", answer_start: str = "",
          dedupe: bool = True) -> list[StrategyResult]:
    """Nudge `base` (raw text sampler with logit access) with `nudger` (aligned chat sampler). Greedy only.

    info: nudged_token_fraction (base-tokenizer tokens written by the nudger / all output tokens), nudged_words,
    rounds, stop_reason, and `segments` [(source, text)] in order."""
    if not gamma >= 0:
        raise ConfigError(f"gamma is a probability threshold (>= 0; above 1 the nudger writes everything), got {gamma}")
    if chunk < 1 or max_tokens < 1 or max_rounds < 1:
        raise ConfigError("chunk, max_tokens and max_rounds must be >= 1")
    for m in ("decode", "count_tokens", "tokenize"):
        if not hasattr(base, m):
            raise ConfigError(f"the base sampler needs {m}() (HFSampler has it)")
    results = []
    for prompt in prompts:
        np_ = nudging_prompts(prompt, system, answer_start)
        b0, n0 = base.compute.copy(), nudger.compute.copy()
        out, reason, rounds = _nudge_one(base, nudger, np_, gamma, chunk, max_tokens, max_rounds)
        output = remove_repeated_suffix(out.text) if dedupe else out.text
        nudged = sum(base.count_tokens(t) for s, t in out.segments if s == "nudger")
        total = sum(base.count_tokens(t) for _, t in out.segments)
        compute = base.compute.minus(b0)
        if nudger.compute is not base.compute:
            compute.add(nudger.compute.minus(n0))
        info = {"strategy": "nudge", "gamma": gamma, "nudged_token_fraction": nudged / total if total else 0.0,
                "nudged_tokens": nudged, "total_tokens": total, "rounds": rounds, "stop_reason": reason,
                "segments": out.segments}
        results.append(StrategyResult(prompt, output, [], None,
                                      Compute(compute.forward_tokens, compute.generated_tokens, 0), info))
    return results


class _Writer:
    def __init__(self) -> None:
        self.text = ""
        self.segments: list[tuple[str, str]] = []

    def add(self, source: str, text: str) -> None:
        if text:
            self.text += text
            self.segments.append((source, text))


def _nudge_one(base: TokenSampler, nudger: Sampler, np_: NudgingPrompt, gamma: float, chunk: int, max_tokens: int,
               max_rounds: int) -> tuple[_Writer, str, int]:
    out, reason, rounds = _Writer(), "max_rounds", 0
    recent: list[str] = []
    while rounds < max_rounds:
        rounds += 1
        if base.count_tokens(out.text) >= max_tokens:
            return out, "length", rounds
        n_out = nudger.extend([np_.nudger], [np_.answer_start + out.text], max_new_tokens=chunk, temperature=0)[0]
        if n_out.finish_reason in ("eos", "stop"):
            out.add("nudger", n_out.text)
            return out, "nudger_finished", rounds
        words = split_words(n_out.text)
        if len(words) == 1:
            out.add("nudger", words[0])
            continue
        accepted, b_out = len(words) - 1, None
        for j in range(1, len(words)):
            if words[j].strip() == "":
                continue  # empty "words" from double spaces
            context = out.text + "".join(words[:j])
            b = base.extend([np_.base], [context], max_new_tokens=chunk, temperature=0)[0]
            first_is_eos = b.finish_reason == "eos" and len(b.token_ids) == 1
            first = "" if first_is_eos else continuation_text(base, context, b.token_ids[:1])
            if (first and words[j].startswith(first)) or _top1(b.token_logprobs, 0) >= gamma:
                accepted, b_out = j, b  # the base agrees or is confident: hand back after words[:j]
                break
        piece = "".join(words[:accepted])
        recent = (recent + [piece])[-3:]
        out.add("nudger", piece)
        if len(recent) == 3 and len(set(recent)) == 1:
            return out, "repeated_nudging_words", rounds
        if b_out is None:
            continue
        done, reason_b = _base_stage(base, np_.base, b_out, gamma, chunk, max_tokens, out)
        if done:
            return out, reason_b, rounds
    return out, reason, rounds


def _base_stage(base: TokenSampler, prompt: str, b_out: Sample, gamma: float, chunk: int, max_tokens: int,
                out: _Writer) -> tuple[bool, str]:
    """Accept base tokens until the first uncertain one (the very first is pre-accepted); (finished, reason)."""
    first = True
    seen_chunks: set[tuple[int, ...]] = set()
    while True:
        ids, lps = b_out.token_ids, b_out.token_logprobs
        take = 0
        for k in range(len(ids)):
            if not (first and k == 0) and _top1(lps, k) < gamma:
                break
            take = k + 1
        first = False
        hit_eos = take == len(ids) and b_out.finish_reason == "eos"
        out.add("base", continuation_text(base, out.text, ids[:take]))
        if hit_eos or (take == len(ids) and b_out.finish_reason == "stop"):
            return True, "base_finished"
        if take < len(ids):
            return False, ""
        if base.count_tokens(out.text) >= max_tokens:
            return True, "length"
        key = tuple(ids)
        if key in seen_chunks:
            return True, "repeated_base_chunk"
        seen_chunks.add(key)
        b_out = base.extend([prompt], [out.text], max_new_tokens=chunk, temperature=0)[0]
