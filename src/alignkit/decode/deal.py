"""DeAL: decoding-time alignment as lookahead search (spec A3).

Huang et al., "DeAL: Decoding-time Alignment for Large Language Models" (arXiv 2402.06147; ACL 2025). No official
code; this follows the spec's per-token formulation (A3.1–A3.2):

    for each unfinished beam s: A = top-k next tokens of p(·|s)            (action pruning; needs logits)
      for a in A: s' = s ⊕ a; look = greedy rollout of l tokens from s'   (lookahead; a cheaper sampler allowed)
                  h = R_a(x, text(s' ⊕ look)); f = log p(s' | x) + λ·h
    keep the top-b candidates by f; EOS-terminated ones move to `finished`; stop at b finished or max_new_tokens.
    return the best finished beam by f (or by R_a on the full output, `final="reward"`).

λ = inf ranks by h only (ties by log-likelihood). b = 1 is "best of the top-k per step". R_a can be a programmatic
constraint (keyword coverage, length) or a reward model, or a weighted sum (build it with the rewards package).
Defaults (the paper's are not recoverable, A3.4): k = b = 5, l = 8, λ = 1.
Compute per output token: b·k lookahead rollouts of l tokens and b·k reward calls (A3.5); all batched. With a
prefix-caching sampler (`HFSampler(prefix_cache_mb=...)`, issue 18 item 3) nothing of a beam is re-encoded: a
step processes b tokens for the top-k calls and b·k·l for the rollouts, i.e. at most b·k·(l + 1) forward tokens
per output token plus the prompt once; the search and its outputs are the same as without the cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.data.records import Prompt
from alignkit.decode.common import Context, RewardFn, StrategyResult, check_contexts, score
from alignkit.decode.sampler import Compute, TokenSampler
from alignkit.errors import ConfigError


@dataclass
class _Beam:
    prompt: int
    ids: list[int]
    logp: float
    f: float = -math.inf
    h: float = 0.0
    done: bool = False


def _rank(beam: _Beam, lam: float) -> tuple[float, float]:
    return (beam.h, beam.logp) if math.isinf(lam) else (beam.f, beam.h)


def deal(sampler: TokenSampler, reward: RewardFn, prompts: Sequence[Prompt], *, top_k: int = 5, beam: int = 5,
         lookahead: int = 8, lam: float = 1.0, max_new_tokens: int = 64, final: str = "score",
         lookahead_sampler: TokenSampler | None = None, contexts: Sequence[Context] | None = None
         ) -> list[StrategyResult]:
    """Lookahead beam search ranking candidates by log p + λ·R_a (module docstring). Requires logit access
    (`next_token_topk`) and `decode`. The lookahead sampler (default: the same) must share the tokenizer."""
    if top_k < 1 or beam < 1 or lookahead < 0 or max_new_tokens < 1:
        raise ConfigError(f"DeAL needs top_k >= 1, beam >= 1, lookahead >= 0, max_new_tokens >= 1; got "
                          f"{top_k}, {beam}, {lookahead}, {max_new_tokens}")
    if final not in ("score", "reward"):
        raise ConfigError(f"final must be 'score' or 'reward', got {final!r}")
    if lam < 0:
        raise ConfigError(f"lambda must be >= 0 (inf = rank by the alignment objective only), got {lam}")
    for m in ("next_token_topk", "decode"):
        if not hasattr(sampler, m):
            raise ConfigError(f"DeAL needs a sampler with logit access ({m}); HFSampler has it")
    look = lookahead_sampler or sampler
    ctx = check_contexts(contexts, len(prompts))
    compute = [Compute() for _ in prompts]
    main_before, look_before = sampler.compute.copy(), look.compute.copy()
    beams = [_Beam(i, [], 0.0) for i in range(len(prompts))]
    finished: list[list[_Beam]] = [[] for _ in prompts]
    steps = 0
    for step in range(max_new_tokens):
        if not beams:
            break
        steps += 1
        tops = _per_prompt_call(sampler, compute, beams,
                                lambda b: sampler.next_token_topk([prompts[x.prompt] for x in b], [x.ids for x in b],
                                                                  top_k))
        cands: list[_Beam] = []
        for b, top in zip(beams, tops, strict=True):
            for t in top:
                if t.logprob == -math.inf:
                    continue
                done = t.is_eos or step == max_new_tokens - 1
                cands.append(_Beam(b.prompt, b.ids + [t.token_id], b.logp + t.logprob, done=done))
        # lookahead rollouts for unfinished candidates, batched across prompts and beams
        roll = [c for c in cands if not c.done and lookahead > 0]
        rolled = {}
        if roll:
            budget = min(lookahead, max_new_tokens - step - 1)
            outs = _per_prompt_call(look, compute, roll,
                                    lambda b, n=budget: look.extend([prompts[x.prompt] for x in b],
                                                                    [x.ids for x in b], max_new_tokens=n,
                                                                    temperature=0))
            rolled = {id(c): o.text for c, o in zip(roll, outs, strict=True)}
        texts = [sampler.decode(c.ids) + rolled.get(id(c), "") for c in cands]
        hs = score(reward, [prompts[c.prompt] for c in cands], texts, [ctx[c.prompt] for c in cands])
        for c, h in zip(cands, hs, strict=True):
            c.h = h
            c.f = c.logp + (lam * h if not math.isinf(lam) else 0.0)
            compute[c.prompt].reward_calls += 1
        beams = []
        for i in range(len(prompts)):
            mine = sorted((c for c in cands if c.prompt == i), key=lambda c: _rank(c, lam), reverse=True)[:beam]
            for c in mine:
                (finished[i] if c.done else beams).append(c)
            if len(finished[i]) >= beam:
                beams = [b for b in beams if b.prompt != i]
    results = []
    for i, prompt in enumerate(prompts):
        pool = finished[i] or [b for b in beams if b.prompt == i]
        texts = [sampler.decode(b.ids) for b in pool]
        if final == "reward" and pool:
            full = score(reward, [prompt] * len(pool), texts, [ctx[i]] * len(pool))
            compute[i].reward_calls += len(pool)
            best = max(range(len(pool)), key=lambda j: (full[j], pool[j].logp))
        else:
            best = max(range(len(pool)), key=lambda j: _rank(pool[j], lam)) if pool else 0
        info = {"strategy": "deal", "top_k": top_k, "beam": beam, "lookahead": lookahead, "lambda": lam,
                "steps": steps, "logp": pool[best].logp if pool else None, "h": pool[best].h if pool else None,
                "finished": len(finished[i])}
        results.append(StrategyResult(prompt, texts[best] if pool else "", texts, [b.h for b in pool],
                                      compute[i], info))
    # per-prompt shares must add up to what the samplers counted
    spent = sampler.compute.minus(main_before)
    if look.compute is not sampler.compute:
        spent.add(look.compute.minus(look_before))
    assert spent.forward_tokens == sum(c.forward_tokens for c in compute), "DeAL accounting drifted"
    return results


def _per_prompt_call(sampler: TokenSampler, compute: list[Compute], rows: list[_Beam], call):  # noqa: ANN001, ANN202
    """Make one batched call and charge its forward tokens to each row's prompt by the row's context length."""
    before = sampler.compute.copy()
    out = call(rows)
    delta = sampler.compute.minus(before)
    if out and hasattr(out[0], "forward_tokens"):  # Samples carry their exact share
        for r, o in zip(rows, out, strict=True):
            compute[r.prompt].forward_tokens += o.forward_tokens
            compute[r.prompt].generated_tokens += len(o.token_ids)
            compute[r.prompt].cached_tokens += getattr(o, "cached_tokens", 0)
    elif len(getattr(sampler, "last_row_forward_tokens", None) or []) == len(rows) and sum(
            sampler.last_row_forward_tokens) == delta.forward_tokens:  # the sampler says what each row cost
        for r, n in zip(rows, sampler.last_row_forward_tokens, strict=True):
            compute[r.prompt].forward_tokens += n
    else:  # next_token_topk: one forward over prompt + prefix per row; split the delta by row context size
        weights = [len(r.ids) + 1 for r in rows]
        total = sum(weights)
        given = 0
        for k, (r, w) in enumerate(zip(rows, weights, strict=True)):
            share = delta.forward_tokens - given if k == len(rows) - 1 else delta.forward_tokens * w // total
            compute[r.prompt].forward_tokens += share
            given += share
    return out
