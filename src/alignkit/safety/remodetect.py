"""ReMoDetect detector training pieces (wave2_selfalign_merge.md §9, testtime_eval.md §B6; Lee, Tack, Shin,
NeurIPS 2024, code hyunseoklee-ai/ReMoDetect `scripts/train.py`, `scripts/generate_para.py`).

* `build_triplets`: rows with a human text (and a question or an LLM text) → (llm, mixed, human) rows, the
  model writing what is missing (`alignkit safety remodetect-data`).
* `mixed_text`: a human/LLM-mixed text: split the human text into sentences, pick ⌊n·fraction⌋ of them
  (seeded, sorted), have a Sampler paraphrase exactly those numbered sentences, splice them back by index; on a
  parse failure the original text is kept.
* `triplet_records` (defined in `alignkit.rewards.training.data`, which reads remodetect training data with it):
  (llm, mixed, human) rows → listwise records with completions [llm, mixed, human] and scores [2, 1, 0], prompt
  "" (no prompt is fed); columns are matched by name, so a swapped triplet is an error, never a silent sign flip;
  rows whose human or LLM text has ≤ 1 word are dropped; whitespace is normalised.
* `remodetect_loss` (defined in `alignkit.rewards.losses`, re-exported here): the three ordered pair terms
  λ_ab · mean[−log σ(r(a) − r(b)) + β·½(r(a)² + r(b)²)], averaged over the pairs, λ = (0.35, 1, 0.35) (the
  released script), β = 0.01, plus the replay term l2_ratio · Σ (r_θ − r_orig)² (a sum over the replay batch)
  against the frozen original reward model. `alignkit reward train --objective remodetect` trains with it.

Detection is evaluated with the existing `alignkit.rewards.evaluate.auroc` (human = 0, LLM = 1).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from alignkit.errors import DataError
from alignkit.rewards.losses import REMODETECT_LAMBDAS as LAMBDAS
from alignkit.rewards.losses import remodetect_loss
from alignkit.rewards.training.data import triplet_records

__all__ = ["LAMBDAS", "build_triplets", "mixed_text", "remodetect_loss", "split_sentences", "triplet_records"]
PARAPHRASE_PROMPT = ("Paraphrase each numbered sentence below in your own words, keeping its meaning. Reply with "
                     "the same numbers, one sentence per line, and nothing else.\n{numbered}")
_NAMES = (("llm", "mixed", "human"), ("pos", "perturb", "neg"))


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


def mixed_text(sampler: Any, human: str, *, fraction: float = 0.5, seed: int = 0, max_new_tokens: int = 256
               ) -> tuple[str, list[int]]:
    """(mixed text, indices paraphrased): ⌊n·fraction⌋ sentences paraphrased by `sampler` (greedy)."""
    sents = split_sentences(human)
    n_pick = int(len(sents) * fraction)
    if n_pick == 0:
        return " ".join(sents), []
    idx = sorted(random.Random(seed).sample(range(len(sents)), n_pick))
    numbered = "\n".join(f"{j + 1}. {sents[i]}" for j, i in enumerate(idx))
    reply = sampler.sample([PARAPHRASE_PROMPT.format(numbered=numbered)], n=1, max_new_tokens=max_new_tokens,
                           temperature=0.0)[0][0].text
    found: dict[int, str] = {}
    for line in reply.splitlines():
        m = re.match(r"\s*(\d+)[.)]\s*(.+)", line)
        if m and m.group(2).strip():
            found[int(m.group(1))] = m.group(2).strip()
    if set(found) != set(range(1, n_pick + 1)):
        return " ".join(sents), []  # parse failure: keep the original text
    out = list(sents)
    for j, i in enumerate(idx):
        out[i] = found[j + 1]
    return " ".join(out), idx


def build_triplets(sampler: Any, rows: Sequence[dict[str, Any]], *, fraction: float = 0.5, seed: int = 0,
                   max_new_tokens: int = 256, temperature: float = 0.0, source: str = "<rows>"
                   ) -> list[dict[str, Any]]:
    """(llm, mixed, human) rows from rows with `human` and either `llm` or a `question`: the aligned model
    answers the question where `llm` is missing (greedy by default), and `mixed_text` makes the mixed text where
    `mixed` is missing; `paraphrased` lists the human sentences it rewrote."""
    for line, row in enumerate(rows, start=1):
        if not isinstance(row.get("human"), str) or not row["human"].strip():
            raise DataError("needs a non-empty human text", source=source, line=line, field="human")
        if not isinstance(row.get("llm"), str) and not isinstance(row.get("question"), str):
            raise DataError("needs an llm text or a question for the model to answer", source=source, line=line,
                            field="llm")
        if sampler is None and not ("llm" in row and "mixed" in row):
            raise DataError("needs llm and mixed texts, or a model (--model) to write them", source=source,
                            line=line, field="mixed")
    ask = [i for i, r in enumerate(rows) if not isinstance(r.get("llm"), str)]
    answers = sampler.sample([rows[i]["question"] for i in ask], n=1, max_new_tokens=max_new_tokens,
                             temperature=temperature, seed=seed) if ask else []
    llm = {i: a[0].text.strip() for i, a in zip(ask, answers, strict=True)}
    out = []
    for i, row in enumerate(rows):
        if isinstance(row.get("mixed"), str):
            mixed, idx = row["mixed"], row.get("paraphrased", [])
        else:
            mixed, idx = mixed_text(sampler, row["human"], fraction=fraction, seed=seed + i,
                                    max_new_tokens=max_new_tokens)
        out.append({"id": row.get("id", i), "question": row.get("question"), "llm": llm.get(i, row.get("llm")),
                    "mixed": mixed, "human": row["human"], "paraphrased": idx})
    return out
