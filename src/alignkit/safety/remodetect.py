"""ReMoDetect detector training pieces (wave2_selfalign_merge.md §9, testtime_eval.md §B6; Lee, Tack, Shin,
NeurIPS 2024, code hyunseoklee-ai/ReMoDetect `scripts/train.py`, `scripts/generate_para.py`).

* `mixed_text`: a human/LLM-mixed text: split the human text into sentences, pick ⌊n·fraction⌋ of them
  (seeded, sorted), have a Sampler paraphrase exactly those numbered sentences, splice them back by index; on a
  parse failure the original text is kept.
* `triplet_records`: (llm, mixed, human) rows → listwise records with completions [llm, mixed, human] and scores
  [2, 1, 0], prompt "" (no prompt is fed); columns are matched by name, so a swapped triplet is an error, never a
  silent sign flip; rows whose human or LLM text has ≤ 1 word are dropped; whitespace is normalised.
* `remodetect_loss`: the three ordered pair terms λ_ab · mean[−log σ(r(a) − r(b)) + β·½(r(a)² + r(b)²)],
  averaged over the pairs, λ = (0.35, 1, 0.35) (the released script), β = 0.01, plus the replay term
  l2_ratio · Σ (r_θ − r_orig)² (a sum over the replay batch) against the frozen original reward model.

Detection is evaluated with the existing `alignkit.rewards.evaluate.auroc` (human = 0, LLM = 1).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.data.records import ListwiseExample
from alignkit.errors import DataError

LAMBDAS: tuple[float, float, float] = (0.35, 1.0, 0.35)  # (llm ≻ mixed), (llm ≻ human), (mixed ≻ human)
PARAPHRASE_PROMPT = ("Paraphrase each numbered sentence below in your own words, keeping its meaning. Reply with "
                     "the same numbers, one sentence per line, and nothing else.\n{numbered}")
_NAMES = (("llm", "mixed", "human"), ("pos", "perturb", "neg"))


def remodetect_loss(r_llm: Tensor, r_mixed: Tensor, r_human: Tensor, *, lambdas: Sequence[float] = LAMBDAS,
                    beta: float = 0.01, replay: Tensor | None = None, replay_orig: Tensor | None = None,
                    l2_ratio: float = 0.01) -> tuple[Tensor, dict[str, float]]:
    """ReMoDetect's triplet loss on `[B]` rewards (+ optional replay term); returns (loss, parts)."""
    pairs = ((r_llm, r_mixed), (r_llm, r_human), (r_mixed, r_human))
    terms = [lam * (-F.logsigmoid(a - b) + beta * 0.5 * (a ** 2 + b ** 2)).mean()
             for lam, (a, b) in zip(lambdas, pairs, strict=True)]
    loss = torch.stack(terms).mean()
    parts = {f"pair{i}": float(t.detach()) for i, t in enumerate(terms)}
    if replay is not None:
        if replay_orig is None:
            raise DataError("the replay term needs the frozen original model's rewards (replay_orig)")
        reg = l2_ratio * ((replay - replay_orig.detach()) ** 2).sum()
        parts["replay"] = float(reg.detach())
        loss = loss + reg
    return loss, parts


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


def triplet_records(rows: Sequence[dict[str, Any]]) -> list[ListwiseExample]:
    """Listwise records [llm, mixed, human] with scores [2, 1, 0]; columns by name (llm/mixed/human or the
    code's pos/perturb/neg)."""
    out = []
    for i, row in enumerate(rows):
        names = next((n for n in _NAMES if all(k in row for k in n)), None)
        if names is None:
            raise DataError("a ReMoDetect row needs columns llm, mixed, human (or pos, perturb, neg); the order "
                            "of a list is never trusted", line=i + 1)
        texts = [" ".join(str(row[k]).split()) for k in names]
        if len(texts[0].split()) <= 1 or len(texts[2].split()) <= 1:
            continue
        out.append(ListwiseExample("", texts, [2.0, 1.0, 0.0], {"row": i}))
    return out
