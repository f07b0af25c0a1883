"""Guide-Align: a guideline library, retrieval of the top guidelines per input, and guideline-conditioned prompts
(wave2_feedback_safety.md §8; "Ensuring Safe and High-Quality Outputs: A Guideline Library Approach for Language
Models", NAACL 2024, code XMUDM/Guide-Align).

* `build_guideline_library(sampler, prompts)`: a model writes general guidelines for each input (a safety
  variant for inputs it flags as risky, a quality variant otherwise); answers are split into "Title: text"
  items, one guideline each [splitting rule uncertain]; exact duplicates are dropped, then near duplicates by
  embedding cosine ≥ 0.95 when an embedder is given [uncertain].
* Retrieval and conditioning (`GuidelineRetriever`, `hidden_state_embedder`, `select_guidelines`,
  `guided_prompt`, `GuidedSampler`, `dpr_nll_loss`) live in `alignkit.decode.guide` (a test-time strategy:
  `alignkit generate --strategy guide`) and are re-exported here.
* `build_guided_sft` / `guided_sft_from_samples`: stage 3, SFT records (x → y_guided) with the guideline ids;
  the training prompt drops the block by default (`keep_guidelines=False`) [uncertain which the paper did].
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from alignkit.data.records import Prompt, SFTExample, prompt_text
from alignkit.decode.guide import (
    HEADER,
    Embedder,
    GuidedSampler,
    GuidelineRetriever,
    dpr_nll_loss,
    fuzzy_ratio,
    guided_prompt,
    hidden_state_embedder,
    select_guidelines,
)
from alignkit.errors import DataError

__all__ = ["HEADER", "Embedder", "GuidedSampler", "GuidelineRetriever", "build_guided_sft", "build_guideline_library",
           "dedupe_library", "dpr_nll_loss", "fuzzy_ratio", "guided_prompt", "guided_sft_from_samples",
           "hidden_state_embedder", "select_guidelines", "split_guidelines"]

SAFETY_DETECT = ("Does the following input contain unsafe content, or could it lead to an unsafe reply? Think "
                 "briefly, then end with Yes or No.\nInput: {x}\nAnswer:")
WRITE_SAFETY = ("The input below may lead to an unsafe reply. Write 3 general guidelines, each on its own line as "
                "'Title: description', that keep replies to inputs like this safe and high quality. Do not refer "
                "to this particular input.\nInput: {x}\nGuidelines:\n")
WRITE_QUALITY = ("Write 3 general guidelines, each on its own line as 'Title: description', that make replies to "
                 "inputs like the one below high quality. Do not refer to this particular input.\nInput: {x}\n"
                 "Guidelines:\n")


def split_guidelines(text: str) -> list[dict[str, str]]:
    """Lines of the form "Title: description" (list markers stripped) → entries {title, text}."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()
        if ":" not in line:
            continue
        title, desc = (p.strip() for p in line.split(":", 1))
        if title and desc and len(title) <= 80:
            out.append({"title": title, "text": f"{title}: {desc}"})
    return out


def dedupe_library(entries: Sequence[dict[str, Any]], embed: Embedder | None = None, max_cos: float = 0.95
                   ) -> list[dict[str, Any]]:
    """Drop exact duplicates (case-insensitive text), then near duplicates with cosine ≥ max_cos (first kept)."""
    seen, out = set(), []
    for e in entries:
        key = " ".join(e["text"].lower().split())
        if key not in seen:
            seen.add(key)
            out.append(e)
    if embed is None or len(out) < 2:
        return out
    vecs = torch.nn.functional.normalize(embed([e["text"] for e in out]).float(), dim=-1)
    keep: list[int] = []
    for i in range(len(out)):
        if all(float(vecs[i] @ vecs[j]) < max_cos for j in keep):
            keep.append(i)
    return [out[i] for i in keep]


def build_guideline_library(sampler: Any, prompts: Sequence[Prompt], *, embed: Embedder | None = None,
                            max_new_tokens: int = 160, seed: int = 0, min_chars: int = 10) -> list[dict[str, Any]]:
    """Library entries {guideline_id, title, text, source_prompt, is_safety} written by `sampler` (§8.2)."""
    texts = [prompt_text(p) for p in prompts if len(prompt_text(p)) > min_chars]
    if not texts:
        raise DataError(f"no input longer than {min_chars} characters to write guidelines for")
    detect = sampler.sample([SAFETY_DETECT.format(x=t) for t in texts], n=1, max_new_tokens=32, temperature=0.0)
    flags = [bool(re.search(r"\byes\b", d[0].text.lower())) for d in detect]
    asks = [(WRITE_SAFETY if f else WRITE_QUALITY).format(x=t) for t, f in zip(texts, flags, strict=True)]
    answers = sampler.sample(asks, n=1, max_new_tokens=max_new_tokens, temperature=0.7, seed=seed)
    entries = []
    for t, f, a in zip(texts, flags, answers, strict=True):
        for g in split_guidelines(a[0].text):
            entries.append({**g, "source_prompt": t, "is_safety": f})
    entries = dedupe_library(entries, embed)
    return [{"guideline_id": f"g_{i:05d}", **e} for i, e in enumerate(entries)]


def build_guided_sft(prompts: Sequence[Prompt], guided: Sequence[str], guidelines: Sequence[Sequence[str]], *,
                     keep_guidelines: bool = False, ids: Sequence[Sequence[str]] | None = None) -> list[SFTExample]:
    """Stage 3: SFT on (x → y_guided); the prompt keeps the guideline block only with keep_guidelines."""
    out = []
    for i, (p, y, gs) in enumerate(zip(prompts, guided, guidelines, strict=True)):
        meta = {"guideline_ids": list(ids[i])} if ids is not None else {"guidelines": list(gs)}
        out.append(SFTExample(guided_prompt(p, gs) if keep_guidelines else p, y, meta))
    return out


def guided_sft_from_samples(rows: Sequence[dict[str, Any]], *, keep_guidelines: bool = False,
                            source: str = "<samples>") -> tuple[list[SFTExample], int]:
    """Stage 3 from `alignkit generate --strategy guide` output rows (prompt = the unguided input, completion =
    the guided answer, info.guidelines / info.guideline_ids = what was retrieved): `build_guided_sft` on them.
    Returns (records, number of rows left out because the guided answer is empty: nothing to learn from)."""
    prompts, outputs, guidelines, ids = [], [], [], []
    empty = 0
    for line, row in enumerate(rows, start=1):
        info = row.get("info") or {}
        if not isinstance(info.get("guidelines"), list):
            raise DataError("needs info.guidelines (rows written by `alignkit generate --strategy guide`)",
                            source=source, line=line, field="info.guidelines")
        if not isinstance(row.get("completion"), str) or row.get("prompt") in (None, "", []):
            raise DataError("needs a prompt and a string completion", source=source, line=line, field="completion")
        if not row["completion"].strip():
            empty += 1
            continue
        prompts.append(row["prompt"])
        outputs.append(row["completion"])
        guidelines.append(info["guidelines"])
        ids.append([str(i) for i in info.get("guideline_ids", [])])
    return build_guided_sft(prompts, outputs, guidelines, keep_guidelines=keep_guidelines, ids=ids), empty
