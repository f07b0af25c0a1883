"""MCM-guided decoding, `moral_filter` (spec ../shared/spec/wave2_selfalign_merge.md §6 step 6; code
ml-research/MoRT_NMI `realtoxicityprompts/generation/gpt2MCM_generation.py`): at each step take the top-k
next-token candidates (k = max(top_k, 10), as the code), apply top-p over them, score the text written so far plus
each candidate with a Reward (the moral score `moral:ENCODER_DIR`, or any other), keep the candidates scoring
above `threshold`, and if at most `keep_min` remain keep the `keep_min` best-scored instead; sample the next token
among the kept ones by their renormalised probabilities (at `temperature`).

Defaults are the code's: top_k 50, keep_min 5, 20 new tokens; thresholds run in the paper are −0.5, 0 and 0.5
(default 0). Compute: one `next_token_topk` forward per step per prompt and one reward call per scored candidate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from alignkit.data.records import Prompt
from alignkit.decode.common import Context, RewardFn, StrategyResult, check_contexts, score
from alignkit.decode.sampler import Compute, TokenSampler
from alignkit.errors import ConfigError


def filter_candidates(logprobs: Sequence[float], scores: Sequence[float], threshold: float, keep_min: int
                      ) -> list[int]:
    """Indices kept at one step: score > threshold, or the keep_min best-scored when at most keep_min pass (ties
    keep the more likely candidate, i.e. the earlier index)."""
    passed = [i for i, s in enumerate(scores) if s > threshold]
    if len(passed) > keep_min:
        return passed
    return sorted(sorted(range(len(scores)), key=lambda i: -scores[i])[:keep_min])


def top_p_cut(logprobs: Sequence[float], top_p: float, temperature: float) -> list[int]:
    """The smallest prefix (candidates are best first) whose tempered, renormalised mass reaches top_p."""
    weights = [math.exp(lp / temperature) for lp in logprobs]
    total = sum(weights)
    out, acc = [], 0.0
    for i, w in enumerate(weights):
        out.append(i)
        acc += w / total
        if acc >= top_p:
            break
    return out


def moral_filter(sampler: TokenSampler, reward: RewardFn, prompts: Sequence[Prompt], *, top_k: int = 50,
                 top_p: float = 1.0, threshold: float = 0.0, keep_min: int = 5, temperature: float = 1.0,
                 max_new_tokens: int = 20, seed: int | None = None, contexts: Sequence[Context] | None = None
                 ) -> list[StrategyResult]:
    """Generate with the candidate filter above; `info` records per-step kept/considered counts."""
    if top_k < 1 or keep_min < 1 or max_new_tokens < 1 or temperature <= 0 or not 0 < top_p <= 1:
        raise ConfigError("moral_filter needs top_k, keep_min, max_new_tokens >= 1, temperature > 0 and "
                          f"0 < top_p <= 1; got {top_k}, {keep_min}, {max_new_tokens}, {temperature}, {top_p}")
    ctxs = check_contexts(contexts, len(prompts))
    rng = random.Random(seed)
    results = []
    for prompt, ctx in zip(prompts, ctxs, strict=True):
        before = sampler.compute.copy()
        ids: list[int] = []
        kept_counts, finish = [], "length"
        reward_calls = 0
        for _ in range(max_new_tokens):
            tops = sampler.next_token_topk([prompt], [ids], max(top_k, 10))[0]
            idx = top_p_cut([t.logprob for t in tops], top_p, temperature)
            cands = [tops[i] for i in idx]
            texts = [sampler.decode(ids + [t.token_id]) for t in cands]
            scores = score(reward, [prompt] * len(cands), texts, [ctx] * len(cands))
            reward_calls += len(cands)
            keep = filter_candidates([t.logprob for t in cands], scores, threshold, keep_min)
            kept_counts.append([len(keep), len(cands)])
            weights = [math.exp(cands[i].logprob / temperature) for i in keep]
            choice = cands[rng.choices(keep, weights=weights)[0]]
            if choice.is_eos:
                finish = "eos"
                break
            ids.append(choice.token_id)
        compute = sampler.compute.minus(before)
        compute = Compute(compute.forward_tokens, compute.generated_tokens + len(ids),
                          compute.reward_calls + reward_calls, compute.cached_tokens)
        results.append(StrategyResult(prompt, sampler.decode(ids), [], None, compute,
                                      {"strategy": "moral_filter", "finish_reason": finish, "kept": kept_counts,
                                       "threshold": threshold}))
    return results


def kept_share(result: StrategyResult) -> float:
    """Mean share of the considered candidates the filter kept, over the result's steps."""
    steps: list[Any] = result.info.get("kept", [])
    return sum(k / n for k, n in steps) / len(steps) if steps else 1.0
