"""Speculative rejection: best-of-N that stops the unpromising samples early (issue 18, item 4).

Sun et al. 2024, "Fast Best-of-N Decoding via Speculative Rejection" (arXiv 2410.20290): start many samples,
score the partial completions with the reward at chosen token checkpoints, stop the lowest-scoring fraction and
continue the rest; the answer is the best-scoring complete sample. The paper triggers the first rejection when
GPU memory fills and reports 16-32x fewer GPU-FLOPs than best-of-N at matched reward with a learned reward model;
here the checkpoints are token counts (`checkpoints`) and the kept fraction at each is `keep` (the paper's
rejection rate is 1 − keep), so the compute is set up front and is the same on any machine.

Per prompt, with n samples, checkpoints c_1 < c_2 < … and keep fraction q:
    sample n rows to c_1 tokens; rows that end (EOS / stop) before a checkpoint are complete candidates;
    at each checkpoint score the unfinished rows' partial text, keep the best ceil(q · alive) (at least 1),
    continue them to the next checkpoint (the last one continues to max_new_tokens);
    score every complete candidate and return the best (ties: the earliest).
The continuation is `extend` with the row's tokens as a token-id prefix, so the samples have the distribution
of plain sampling; with a prefix-caching sampler (`HFSampler(prefix_cache_mb=...)`) nothing is re-encoded.
Reward calls: one per partial score and one per complete candidate.

`partial_reward` scores the partial completions with another reward than the final one: the paper uses one
learned RM for both, but a verifier (CSR) on 8 or 16 tokens of text decides few constraints yet
(docs/benchmarks.md, Test-time frontier), so a learned RM trained on partial text can rank the unfinished rows
while the verifier still picks among complete candidates (`alignkit generate --strategy spec_reject --reward csr
--set partial_reward=rm:DIR`). Default: the final reward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from alignkit.data.records import Prompt
from alignkit.decode.common import Context, RewardFn, StrategyResult, check_contexts, reward_label, score
from alignkit.decode.sampler import Compute, Sampler, seed_for
from alignkit.errors import ConfigError


@dataclass
class _Row:
    prompt: int
    ids: list[int] = field(default_factory=list)
    text: str = ""
    done: bool = False
    partial_scores: list[float] = field(default_factory=list)


def spec_reject(sampler: Sampler, reward: RewardFn, prompts: Sequence[Prompt], n: int = 16, *,
                checkpoints: Sequence[int] = (8, 16), keep: float = 0.25, max_new_tokens: int = 128,
                temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
                seed: int | None = None, contexts: Sequence[Context] | None = None,
                partial_reward: RewardFn | None = None) -> list[StrategyResult]:
    """Best-of-n with early rejection at token `checkpoints`, keeping the best `keep` fraction each time; the
    partial completions are ranked by `partial_reward` (default `reward`), the complete candidates by `reward`.

    Result per prompt: `completion` = the best complete candidate by reward, `candidates` / `scores` = every
    complete candidate and its reward. info: n, checkpoints, keep, alive (unfinished rows after each
    rejection), rejected, selected_reward, and generated tokens compared with n full samples is in `compute`."""
    cps = [int(c) for c in checkpoints]
    if n < 1 or not 0 < keep <= 1 or max_new_tokens < 1:
        raise ConfigError(f"spec_reject needs n >= 1, 0 < keep <= 1, max_new_tokens >= 1; got {n}, {keep}, "
                          f"{max_new_tokens}")
    if any(c < 1 for c in cps) or cps != sorted(set(cps)):
        raise ConfigError(f"checkpoints must be increasing positive token counts, got {list(checkpoints)}")
    cps = [c for c in cps if c < max_new_tokens]
    decode = getattr(sampler, "decode", None)
    if decode is None:
        raise ConfigError("spec_reject continues samples by token ids and needs a sampler with decode(token_ids)")
    ctx = check_contexts(contexts, len(prompts))
    ranker = reward if partial_reward is None else partial_reward
    compute = [Compute() for _ in prompts]
    bounds = cps + [max_new_tokens]
    first = sampler.sample(prompts, n=n, max_new_tokens=bounds[0], temperature=temperature, top_p=top_p,
                           top_k=top_k, stop=stop, seed=seed)
    rows: list[_Row] = []
    for i, samples in enumerate(first):
        for s in samples:
            compute[i].add(s.compute)
            rows.append(_Row(i, list(s.token_ids), s.text, s.finish_reason != "length"
                             or len(s.token_ids) >= max_new_tokens))
    alive_log: list[list[int]] = [[] for _ in prompts]
    for j, (here, nxt) in enumerate(zip(bounds, bounds[1:], strict=False)):
        alive = [r for r in rows if not r.done]
        if not alive:
            break
        partial = score(ranker, [prompts[r.prompt] for r in alive], [r.text for r in alive],
                        [ctx[r.prompt] for r in alive])
        survivors: list[_Row] = []
        for i in range(len(prompts)):
            mine = [(s, k, r) for k, (r, s) in enumerate(zip(alive, partial, strict=True)) if r.prompt == i]
            compute[i].reward_calls += len(mine)
            for s, _, r in mine:
                r.partial_scores.append(s)
            kept = sorted(mine, key=lambda t: (-t[0], t[1]))[:max(1, math.ceil(keep * len(mine)))] if mine else []
            for _, _, r in mine:
                r.done = True  # rejected rows are dropped; survivors are re-opened below
            for _, _, r in kept:
                r.done = False
            survivors.extend(r for _, _, r in sorted(kept, key=lambda t: t[1]))
            alive_log[i].append(len(kept))
        rejected = {id(r) for r in alive} - {id(r) for r in survivors}
        rows = [r for r in rows if id(r) not in rejected]
        outs = sampler.extend([prompts[r.prompt] for r in survivors], [r.ids for r in survivors],
                              max_new_tokens=nxt - here, temperature=temperature, top_p=top_p, top_k=top_k,
                              stop=stop, seed=seed_for(seed, 104_729, j) if seed is not None else None)
        for r, o in zip(survivors, outs, strict=True):
            compute[r.prompt].add(o.compute)
            r.text = decode(r.ids) + o.text
            r.ids = r.ids + list(o.token_ids)
            r.done = o.finish_reason != "length" or len(r.ids) >= max_new_tokens
    final = score(reward, [prompts[r.prompt] for r in rows], [r.text for r in rows], [ctx[r.prompt] for r in rows])
    results = []
    for i, prompt in enumerate(prompts):
        mine = [(s, r) for s, r in zip(final, rows, strict=True) if r.prompt == i]
        compute[i].reward_calls += len(mine)
        best = max(range(len(mine)), key=lambda k: (mine[k][0], -k))
        info = {"strategy": "spec_reject", "n": n, "checkpoints": cps, "keep": keep, "alive": alive_log[i],
                "rejected": n - len(mine), "selected_reward": mine[best][0], "partial_reward": reward_label(ranker),
                "lengths": [len(r.ids) for _, r in mine]}
        results.append(StrategyResult(prompt, mine[best][1].text, [r.text for _, r in mine],
                                      [s for s, _ in mine], compute[i], info))
    return results
