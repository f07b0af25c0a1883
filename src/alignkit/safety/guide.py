"""Guide-Align: a guideline library, retrieval of the top guidelines per input, and guideline-conditioned prompts
(wave2_feedback_safety.md §8; "Ensuring Safe and High-Quality Outputs: A Guideline Library Approach for Language
Models", NAACL 2024, code XMUDM/Guide-Align).

* `build_guideline_library(sampler, prompts)`: a model writes general guidelines for each input (a safety
  variant for inputs it flags as risky, a quality variant otherwise); answers are split into "Title: text"
  items, one guideline each [splitting rule uncertain]; exact duplicates are dropped, then near duplicates by
  embedding cosine ≥ 0.95 when an embedder is given [uncertain].
* `GuidelineRetriever`: dot-product retrieval over guideline embeddings. The embedder is any
  `texts -> [N, d]` function; `hidden_state_embedder(model, tokenizer)` mean-pools a causal LM's last hidden
  states (the policy's own states; no extra download). `dpr_nll_loss` is the DPR training loss of §8.3.
* `select_guidelines`: walk the top-20 in rank order, keep one only if its difflib ratio to every kept one is
  < 0.5 (≈ fuzzywuzzy ratio / 100), stop at k = 6.
* `guided_prompt`: the guideline block (a header, one guideline per line, fenced by "####") goes before the user
  turn, appended to the system message; k = 0 returns the prompt unchanged.
* `build_guided_sft`: SFT records (x → y_guided); the training prompt drops the block by default
  (`keep_guidelines=False`) [uncertain which the paper did].
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from alignkit.data.records import Prompt, SFTExample, prompt_text
from alignkit.errors import DataError

Embedder = Callable[[Sequence[str]], torch.Tensor]
HEADER = "Follow these guidelines when you answer:"
SAFETY_DETECT = ("Does the following input contain unsafe content, or could it lead to an unsafe reply? Think "
                 "briefly, then end with Yes or No.\nInput: {x}\nAnswer:")
WRITE_SAFETY = ("The input below may lead to an unsafe reply. Write 3 general guidelines, each on its own line as "
                "'Title: description', that keep replies to inputs like this safe and high quality. Do not refer "
                "to this particular input.\nInput: {x}\nGuidelines:\n")
WRITE_QUALITY = ("Write 3 general guidelines, each on its own line as 'Title: description', that make replies to "
                 "inputs like the one below high quality. Do not refer to this particular input.\nInput: {x}\n"
                 "Guidelines:\n")


def fuzzy_ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


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


def dpr_nll_loss(query: torch.Tensor, contexts: torch.Tensor, positive: int = 0) -> torch.Tensor:
    """−log softmax(q · c)[positive] over the candidate contexts (the DPR retriever loss of §8.3)."""
    scores = contexts @ query
    return -torch.log_softmax(scores, dim=-1)[positive]


def select_guidelines(ranked: Sequence[str], k: int = 6, max_ratio: float = 0.5) -> list[str]:
    """Keep guidelines in rank order whose fuzzy ratio to every kept one is < max_ratio; at most k."""
    kept: list[str] = []
    for g in ranked:
        if len(kept) >= k:
            break
        if all(fuzzy_ratio(g, h) < max_ratio for h in kept):
            kept.append(g)
    return kept


def guided_prompt(prompt: Prompt, guidelines: Sequence[str]) -> Prompt:
    """`prompt` with the guideline block before the user turn (in the system message); unchanged for k = 0."""
    if not guidelines:
        return prompt
    block = "####\n" + HEADER + "\n" + "\n".join(guidelines) + "\n####"
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = messages[0]["content"] + "\n\n" + block
        return messages
    return [{"role": "system", "content": block}, *messages]


def hidden_state_embedder(model: Any, tokenizer: Any, batch_size: int = 16, max_length: int = 256) -> Embedder:
    """Mean-pooled, L2-normalised last hidden states of a causal LM over the raw text."""

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> torch.Tensor:
        device = next(model.parameters()).device
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length).to(device)
            hidden = model(**enc, output_hidden_states=True).hidden_states[-1].float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            v = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(v, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 1)

    return embed


class GuidelineRetriever:
    """Exact inner-product search over a guideline library (entries with `text`)."""

    def __init__(self, library: Sequence[dict[str, Any]], embed: Embedder) -> None:
        if not library:
            raise DataError("the guideline library is empty")
        self.library = list(library)
        self.embed = embed
        self.matrix = embed([g["text"] for g in self.library])

    def top(self, query: str, n: int = 20) -> list[str]:
        q = self.embed([query])[0]
        scores = self.matrix @ q
        order = torch.argsort(scores, descending=True, stable=True)[:n]
        return [self.library[int(i)]["text"] for i in order]

    def guidelines_for(self, prompt: Prompt, k: int = 6, n_docs: int = 20, max_ratio: float = 0.5) -> list[str]:
        return select_guidelines(self.top(prompt_text(prompt), n_docs), k, max_ratio)


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
