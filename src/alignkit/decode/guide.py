"""Guideline conditioning at test time (Guide-Align stage 2, wave2_feedback_safety.md §8.3–§8.4; NAACL 2024,
code XMUDM/Guide-Align `generate_response.py`): retrieve the top guidelines for an input by embedding similarity
and place them before the user turn. The library itself is built by `alignkit.safety.guide`.

* `GuidelineRetriever(library, embed)`: exact (flat) inner-product search over the guideline embeddings, n_docs = 20.
  The embedder is a parameter: any `texts -> [N, d]` function. `hidden_state_embedder(model, tokenizer)`
  mean-pools a causal LM's last hidden states (L2-normalised); with the policy itself no extra model is downloaded
  (the paper trains a DPR bi-encoder instead; `dpr_nll_loss` is its loss, §8.3, for anyone training one).
* `select_guidelines`: walk the ranked guidelines, keep one only if its difflib ratio to every kept one is < 0.5
  (≈ fuzzywuzzy `ratio`/100), stop at k = 6.
* `guided_prompt`: a "####"-fenced block (a header line, one guideline per line) appended to the system message,
  so it comes before the user turn; k = 0 returns the prompt unchanged.
* `GuidedSampler(inner, retriever, k, n_docs, max_ratio)`: a Sampler that conditions every prompt this way (one
  sampler protocol: any strategy can run on it); `alignkit generate --strategy guide` samples through it (greedy
  by default, as §8.4) and records each prompt's guidelines.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from alignkit.data.records import Prompt, prompt_text
from alignkit.decode.system import ComposedSampler
from alignkit.errors import DataError

Embedder = Callable[[Sequence[str]], torch.Tensor]
HEADER = "Follow these guidelines when you answer:"


def fuzzy_ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


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
    """Exact inner-product search over a guideline library (entries with `text`, optionally `guideline_id`); the
    query is the prompt's last user turn (the input x of §8.4, not the system message)."""

    def __init__(self, library: Sequence[dict[str, Any]], embed: Embedder) -> None:
        if not library:
            raise DataError("the guideline library is empty")
        bad = next((i for i, g in enumerate(library) if not isinstance(g.get("text"), str) or not g["text"]), None)
        if bad is not None:
            raise DataError("a guideline needs a non-empty string text", line=bad + 1, field="text")
        self.library = list(library)
        self.embed = embed
        self.matrix = embed([g["text"] for g in self.library])
        self.ids = {g["text"]: str(g.get("guideline_id", i)) for i, g in enumerate(self.library)}

    def top(self, query: str, n: int = 20) -> list[str]:
        q = self.embed([query])[0]
        scores = self.matrix @ q
        order = torch.argsort(scores, descending=True, stable=True)[:n]
        return [self.library[int(i)]["text"] for i in order]

    def guidelines_for(self, prompt: Prompt, k: int = 6, n_docs: int = 20, max_ratio: float = 0.5) -> list[str]:
        return select_guidelines(self.top(prompt_text(prompt), n_docs), k, max_ratio)


class GuidedSampler(ComposedSampler):
    """A Sampler whose prompts carry their top-k retrieved guidelines (`guided_prompt`); rewards and the output
    rows still see the original prompt. Retrieval is cached per input, so asking `guidelines_for` after sampling
    costs nothing."""

    def __init__(self, inner: Any, retriever: GuidelineRetriever, k: int = 6, n_docs: int = 20,
                 max_ratio: float = 0.5) -> None:
        if k < 0 or n_docs < 1 or not 0.0 < max_ratio <= 1.0:
            raise DataError(f"guide needs k >= 0, n_docs >= 1 and 0 < max_ratio <= 1; got k={k}, n_docs={n_docs}, "
                            f"max_ratio={max_ratio}")
        super().__init__(inner, self._compose)
        self.retriever, self.k, self.n_docs, self.max_ratio = retriever, k, n_docs, max_ratio
        self._cache: dict[str, list[str]] = {}

    def guidelines_for(self, prompt: Prompt) -> list[str]:
        query = prompt_text(prompt)
        if query not in self._cache:
            self._cache[query] = (self.retriever.guidelines_for(prompt, self.k, self.n_docs, self.max_ratio)
                                  if self.k else [])
        return self._cache[query]

    def guideline_ids(self, prompt: Prompt) -> list[str]:
        return [self.retriever.ids[g] for g in self.guidelines_for(prompt)]

    def _compose(self, prompt: Prompt) -> Prompt:
        return guided_prompt(prompt, self.guidelines_for(prompt))
