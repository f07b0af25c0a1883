"""Best-of-N, majority vote (MV), weighted majority vote (WMV) and MBR selection (spec A1).

* BoN (Stiennon et al. 2020; Nakano et al. 2021): draw N i.i.d. samples, score them with r(x, y), return
  argmax_i s_i; ties go to the first index (as `np.argmax` in the QAlign code).
* MV (self-consistency, Wang et al. 2023): most frequent extracted answer a_i = ans(y_i); ties by first occurrence
  (`Counter.most_common`).
* WMV (QAlign `is_weighted_mode_correct`): w_i = softmax_i(s_i / β_w), β_w = 1.0; W(a) = Σ_{i: a_i = a} w_i;
  argmax_a W(a). `weight="raw"` (w_i = s_i) and `weight="exp"` (w_i = exp(s_i)) are the other papers' variants.
* MBR for open-ended outputs (QAlign `mbr.py`): argmax_i mean_j U(y_i, y_j) with U = ROUGE-1 F1 on token bags;
  WMBR multiplies U(y_i, y_j) by the raw reward s_j of the pseudo-reference. `utility="chrf"` (sacrebleu chrF) and
  `"token_f1"` (whitespace tokens) are offered too, or any callable U(a, b) -> float.
Compute: N generations + N reward calls (MV: no reward calls).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from alignkit.data.records import Prompt
from alignkit.decode.common import Context, RewardFn, StrategyResult, check_contexts, repeat_rows, score
from alignkit.decode.sampler import Compute, Sampler
from alignkit.errors import ConfigError

Extractor = Callable[[str], str | None]
Utility = Callable[[Any, Any], float]

SELECTIONS = ("reward", "vote", "weighted_vote", "mbr", "wmbr")


# ---------------------------------------------------------------- answer extractors
def last_number(text: str) -> str | None:
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    return nums[-1].replace(",", "").rstrip(".") if nums else None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces balanced."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def last_option_letter(text: str) -> str | None:
    letters = re.findall(r"\b([A-E])\b", text)
    return letters[-1] if letters else None


EXTRACTORS: dict[str, Extractor] = {"last_number": last_number, "last_boxed": last_boxed,
                                    "last_option_letter": last_option_letter,
                                    "identity": lambda t: t.strip()}


def get_extractor(spec: str | Extractor | None) -> Extractor:
    if spec is None:
        return EXTRACTORS["identity"]
    if callable(spec):
        return spec
    if spec not in EXTRACTORS:
        raise ConfigError(f"unknown answer extractor {spec!r}; choose from {sorted(EXTRACTORS)} or pass a callable")
    return EXTRACTORS[spec]


# ---------------------------------------------------------------- utilities for MBR
def rouge1_f1(a: Sequence[Any], b: Sequence[Any]) -> float:
    """ROUGE-1 F1 between two token bags (ids or strings)."""
    ca, cb = Counter(a), Counter(b)
    overlap = sum((ca & cb).values())
    if overlap == 0:
        return 0.0
    p, r = overlap / max(1, sum(cb.values())), overlap / max(1, sum(ca.values()))
    return 2 * p * r / (p + r)


def token_f1(a: str, b: str) -> float:
    return rouge1_f1(a.split(), b.split())


def chrf(a: str, b: str) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(a, [b]).score / 100.0


UTILITIES: dict[str, Utility] = {"rouge1": rouge1_f1, "token_f1": token_f1, "chrf": chrf}


# ---------------------------------------------------------------- selection rules (pure)
def select_best(scores: Sequence[float]) -> int:
    """argmax with ties to the first index."""
    if not scores:
        raise ConfigError("no candidates to select from")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, int]:
    """The most frequent non-None answer (ties: first occurrence) and the index of its first candidate.
    If every answer is None, returns (None, 0)."""
    valid = [a for a in answers if a is not None]
    if not valid:
        return None, 0
    answer = Counter(valid).most_common(1)[0][0]
    return answer, answers.index(answer)


def vote_weights(scores: Sequence[float], beta: float = 1.0, weight: str = "softmax") -> list[float]:
    if weight == "softmax":
        if beta <= 0:
            raise ConfigError(f"weighted-vote temperature beta must be > 0, got {beta}")
        m = max(scores)
        e = [math.exp((s - m) / beta) for s in scores]
        z = sum(e)
        return [x / z for x in e]
    if weight == "raw":
        return list(scores)
    if weight == "exp":
        return [math.exp(s) for s in scores]
    raise ConfigError(f"unknown vote weight {weight!r}; choose softmax, raw or exp")


def weighted_vote(answers: Sequence[str | None], scores: Sequence[float], beta: float = 1.0,
                  weight: str = "softmax") -> tuple[str | None, int]:
    """argmax_a Σ_{i: a_i = a} w_i; ties by first occurrence. Returns (answer, first index with that answer)."""
    w = vote_weights(scores, beta, weight)
    totals: dict[str, float] = {}
    for a, wi in zip(answers, w, strict=True):
        if a is not None:
            totals[a] = totals.get(a, 0.0) + wi
    if not totals:
        return None, select_best(scores)
    best = max(totals, key=lambda a: (totals[a], -answers.index(a)))
    return best, answers.index(best)


def mbr_select(candidates: Sequence[Any], utility: Utility, weights: Sequence[float] | None = None) -> int:
    """argmax_i mean_j U(c_i, c_j)·w_j (w_j = 1 for MBR, the raw reward s_j for WMBR); ties to the first index."""
    n = len(candidates)
    if n == 0:
        raise ConfigError("no candidates to select from")
    w = list(weights) if weights is not None else [1.0] * n
    gains = [sum(utility(candidates[i], candidates[j]) * w[j] for j in range(n)) / n for i in range(n)]
    return select_best(gains)


def select(texts: Sequence[str], scores: Sequence[float] | None, how: str, *, extractor: Extractor | None = None,
           beta: float = 1.0, weight: str = "softmax", utility: str | Utility = "rouge1",
           token_ids: Sequence[Sequence[int]] | None = None) -> tuple[int, dict[str, Any]]:
    """Pick one of `texts` by `how` in SELECTIONS; returns (index, info)."""
    ext = get_extractor(extractor)
    if how == "reward":
        if scores is None:
            raise ConfigError("selection 'reward' needs reward scores")
        return select_best(scores), {}
    if how == "vote":
        answers = [ext(t) for t in texts]
        answer, idx = majority_vote(answers)
        return idx, {"answer": answer, "votes": Counter(a for a in answers if a is not None).most_common(5)}
    if how == "weighted_vote":
        if scores is None:
            raise ConfigError("selection 'weighted_vote' needs reward scores")
        answer, idx = weighted_vote([ext(t) for t in texts], scores, beta, weight)
        return idx, {"answer": answer}
    if how in ("mbr", "wmbr"):
        u = UTILITIES.get(utility) if isinstance(utility, str) else utility
        if u is None:
            raise ConfigError(f"unknown MBR utility {utility!r}; choose from {sorted(UTILITIES)} or pass a callable")
        # ROUGE-1 on token ids when ids are known (as the QAlign code), else on whitespace tokens
        cands: Sequence[Any] = texts
        if utility == "rouge1":
            cands = [list(t) for t in token_ids] if token_ids is not None else [t.split() for t in texts]
        if how == "wmbr" and scores is None:
            raise ConfigError("selection 'wmbr' needs reward scores")
        return mbr_select(cands, u, scores if how == "wmbr" else None), {}
    raise ConfigError(f"unknown selection {how!r}; choose from {SELECTIONS}")


# ---------------------------------------------------------------- the strategy
def best_of_n(sampler: Sampler, reward: RewardFn | None, prompts: Sequence[Prompt], n: int = 8, *,
              select_by: str = "reward", max_new_tokens: int = 128, temperature: float = 1.0, top_p: float = 1.0,
              top_k: int = 0, stop: Sequence[str] = (), seed: int | None = None,
              extractor: str | Extractor | None = None, beta: float = 1.0, weight: str = "softmax",
              utility: str | Utility = "rouge1", contexts: Sequence[Context] | None = None
              ) -> list[StrategyResult]:
    """Sample n completions per prompt (one batched call, prompt encoded once) and select one.

    `select_by`: "reward" (BoN), "vote" (MV, no reward needed), "weighted_vote" (WMV, softmax(s/beta) weights),
    "mbr" or "wmbr". `contexts[i]` is passed to the reward for every completion of prompt i.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if select_by not in SELECTIONS:
        raise ConfigError(f"unknown selection {select_by!r}; choose from {SELECTIONS}")
    needs_reward = select_by in ("reward", "weighted_vote", "wmbr")
    if needs_reward and reward is None:
        raise ConfigError(f"selection {select_by!r} needs a reward")
    ctx = check_contexts(contexts, len(prompts))
    samples = sampler.sample(prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                             top_k=top_k, stop=stop, seed=seed)
    scores_flat: list[float] | None = None
    if reward is not None:
        texts = [s.text for row in samples for s in row]
        scores_flat = score(reward, repeat_rows(prompts, [n] * len(prompts)), texts, repeat_rows(ctx, [n] * len(prompts)))
    results = []
    for i, (prompt, row) in enumerate(zip(prompts, samples, strict=True)):
        row_scores = scores_flat[i * n:(i + 1) * n] if scores_flat is not None else None
        idx, info = select([s.text for s in row], row_scores, select_by, extractor=extractor, beta=beta,
                           weight=weight, utility=utility, token_ids=[s.token_ids for s in row])
        compute = Compute()
        for s in row:
            compute.add(s.compute)
        compute.reward_calls = n if row_scores is not None else 0
        info.update({"strategy": "bon", "select_by": select_by, "n": n, "index": idx,
                     "finish_reasons": [s.finish_reason for s in row]})
        if row_scores is not None:
            info["selected_reward"] = row_scores[idx]
            info["mean_reward"] = sum(row_scores) / n
        results.append(StrategyResult(prompt, row[idx].text, [s.text for s in row], row_scores, compute, info))
    return results
