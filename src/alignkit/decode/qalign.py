"""QAlign: QUEST Metropolis–Hastings test-time alignment (spec A2).

Faria & Smith 2025, "Sample, Don't Search" (arXiv 2504.03790), building on QUEST (Faria et al., NeurIPS 2024).
Target: π_β(y|x) ∝ p(y|x)·exp(r(x,y)/β). Proposal (suffix kernel): i ~ Uniform{0..|y|−1}, keep y_<i, resample the
suffix from p(·|x, y_<i) at temperature 1 with no top-p/top-k (otherwise the LM terms do not cancel, A2.9).
Acceptance (A2.3, LM terms cancel):

    log α = clip((r(x,y') − r(x,y))/β + log|y| − log|y'|, −20, 20);   accept with prob min(1, exp(log α)).

State = token ids (|y| counts EOS when generated, consistently on both sides). The continuation budget is
`max_new_tokens − i`, so every state obeys the same length cap and the capped ancestral p is the exact proposal.
Chains: `chains` per prompt (default 1), every chain of every prompt advanced together (one batched `extend` with
a budget per row where the sampler supports it, else one per distinct budget, + one batched reward call per
step). Independent chains of one stationary target pool their samples for the final selection (issue 18 item 2:
many short chains in one batch keep a batched sampler busy). With a prefix-caching sampler
(`HFSampler(prefix_cache_mb=...)`) a proposal re-encodes nothing of the kept prefix: the state's KV was stored
when it was generated, so a step costs about the new suffix's tokens.
Chain samples: the initial state plus the state after each of T steps (rejections repeat the state) → T+1 samples,
then `burn_in` (default 0, as the released code) and `thin` (default 1). Final answer: majority vote over
extracted answers (default; as `qalign/utils/pred.py`), ROUGE-1 MBR on token ids (IFEval), WMBR, or the last
state. Defaults: β = 1.0 (`launch_experiment.py`; the general experiments use 0.5), reward clamp off (the RM code
clips logits to ±40: pass `reward_clip=40`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from alignkit.data.records import Prompt
from alignkit.decode.bon import Extractor, Utility, select
from alignkit.decode.common import Context, RewardFn, StrategyResult, check_contexts, score
from alignkit.decode.sampler import Sampler, seed_for
from alignkit.errors import ConfigError

LOG_RATIO_CLAMP = 20.0


def acceptance_log_ratio(r_old: float, r_new: float, len_old: int, len_new: int, beta: float,
                         clamp: float = LOG_RATIO_CLAMP) -> float:
    """log α before the min(1, ·): (r' − r)/β + log|y| − log|y'|, clipped to ±clamp."""
    if beta <= 0:
        raise ConfigError(f"beta must be > 0, got {beta}")
    if len_old < 1 or len_new < 1:
        raise ConfigError("QAlign states must have at least one token")
    v = (r_new - r_old) / beta + math.log(len_old) - math.log(len_new)
    return max(-clamp, min(clamp, v))


def acceptance_probability(r_old: float, r_new: float, len_old: int, len_new: int, beta: float,
                           clamp: float = LOG_RATIO_CLAMP) -> float:
    return min(1.0, math.exp(acceptance_log_ratio(r_old, r_new, len_old, len_new, beta, clamp)))


def qalign(sampler: Sampler, reward: RewardFn, prompts: Sequence[Prompt], steps: int = 32, *, beta: float = 1.0,
           max_new_tokens: int = 128, burn_in: int = 0, thin: int = 1, select_by: str = "vote",
           extractor: str | Extractor | None = None, utility: str | Utility = "rouge1", seed: int | None = None,
           reward_clip: float | None = None, stop: Sequence[str] = (), contexts: Sequence[Context] | None = None,
           keep_chain: bool = True, chains: int = 1) -> list[StrategyResult]:
    """Run `chains` QAlign chains of `steps` MH steps per prompt. `select_by`: "vote", "mbr", "wmbr" or "last"
    (the last state of the last chain).

    Result: `candidates` = chain samples after burn-in/thinning (when keep_chain; chains one after another),
    `scores` = their rewards. info: acceptance_rate, accepted, chain_rewards and chain_lengths (all T+1 states),
    log_alphas and proposal_lengths (one per step) of the first chain; with chains > 1 also `chains`, one such
    dict per chain, and acceptance_rate / accepted over all chains."""
    if chains < 1:
        raise ConfigError(f"chains must be >= 1, got {chains}")
    if steps < 0 or burn_in < 0 or thin < 1:
        raise ConfigError(f"need steps >= 0, burn_in >= 0, thin >= 1; got {steps}, {burn_in}, {thin}")
    if burn_in > steps:
        raise ConfigError(f"burn_in ({burn_in}) leaves no chain samples out of {steps + 1}")
    if select_by not in ("vote", "mbr", "wmbr", "last"):
        raise ConfigError(f"unknown QAlign selection {select_by!r}; choose vote, mbr, wmbr or last")
    if beta <= 0:
        raise ConfigError(f"beta must be > 0, got {beta}")
    decode = getattr(sampler, "decode", None)
    if decode is None:
        raise ConfigError("QAlign keeps states as token ids and needs a sampler with decode(token_ids)")
    ctx = check_contexts(contexts, len(prompts))
    n_prompts, first_prompts = len(prompts), list(prompts)
    # one row per chain, prompt-major; with chains=1 the rows are the prompts (same random draws as before)
    prompts = [p for p in prompts for _ in range(chains)]
    ctx = [c for c in ctx for _ in range(chains)]
    rng = random.Random(seed)
    call_seed = (lambda t: seed_for(seed, 7_919, t)) if seed is not None else (lambda t: None)

    def rew(texts: list[str]) -> list[float]:
        s = score(reward, prompts, texts, ctx)
        return [max(-reward_clip, min(reward_clip, v)) for v in s] if reward_clip else s

    # exact proposal = p: temperature 1, no truncation (spec C2.2)
    # the chains of a prompt start from `chains` samples of one prompt encoding
    init = [s for row in sampler.sample(first_prompts, n=chains, max_new_tokens=max_new_tokens, temperature=1.0,
                                        top_p=1.0, top_k=0, stop=stop, seed=call_seed(0)) for s in row]
    state_ids = [s.token_ids for s in init]
    state_txt = [s.text for s in init]
    compute = [s.compute for s in init]
    state_r = rew(state_txt)
    chains_txt = [[t] for t in state_txt]
    chains_ids = [[ids] for ids in state_ids]
    chains_r = [[r] for r in state_r]
    accepted = [0] * len(prompts)
    log_alphas: list[list[float]] = [[] for _ in prompts]
    proposal_lengths: list[list[int]] = [[] for _ in prompts]
    for t in range(1, steps + 1):
        cut = [rng.randrange(len(ids)) for ids in state_ids]
        prefixes = [ids[:i] for ids, i in zip(state_ids, cut, strict=True)]
        budgets = [max_new_tokens - i for i in cut]
        # each continuation gets its exact budget: in one batched call when the sampler takes a budget per row
        # (HFSampler), else one call per distinct budget (with random cuts that is up to one call per chain)
        props: list = [None] * len(prompts)
        if getattr(sampler, "per_row_budgets", False) is True and len(set(budgets)) > 1:
            props = list(sampler.extend(list(prompts), prefixes, max_new_tokens=budgets, temperature=1.0,
                                        top_p=1.0, top_k=0, stop=stop, seed=call_seed(t)))
        else:
            for budget in sorted(set(budgets)):
                rows = [k for k, b in enumerate(budgets) if b == budget]
                outs = sampler.extend([prompts[k] for k in rows], [prefixes[k] for k in rows],
                                      max_new_tokens=budget, temperature=1.0, top_p=1.0, top_k=0, stop=stop,
                                      seed=seed_for(call_seed(t), budget) if seed is not None else None)
                for k, o in zip(rows, outs, strict=True):
                    props[k] = o
        new_ids = [pre + list(o.token_ids) for pre, o in zip(prefixes, props, strict=True)]
        new_txt = [decode(pre) + o.text for pre, o in zip(prefixes, props, strict=True)]
        new_r = rew(new_txt)
        for k in range(len(prompts)):
            compute[k].add(props[k].compute)
            log_a = acceptance_log_ratio(state_r[k], new_r[k], len(state_ids[k]), len(new_ids[k]), beta)
            log_alphas[k].append(log_a)
            proposal_lengths[k].append(len(new_ids[k]))
            if log_a >= 0 or rng.random() < math.exp(log_a):
                state_ids[k], state_txt[k], state_r[k] = new_ids[k], new_txt[k], new_r[k]
                accepted[k] += 1
            chains_txt[k].append(state_txt[k])
            chains_ids[k].append(state_ids[k])
            chains_r[k].append(state_r[k])
    results = []
    for i in range(n_prompts):
        rows = range(i * chains, (i + 1) * chains)
        txt = [x for k in rows for x in chains_txt[k][burn_in::thin]]
        ids = [x for k in rows for x in chains_ids[k][burn_in::thin]]
        rs = [x for k in rows for x in chains_r[k][burn_in::thin]]
        if select_by == "last":
            idx, info = len(txt) - 1, {}
        else:
            idx, info = select(txt, rs, select_by, extractor=extractor, utility=utility, token_ids=ids)
        total = compute[rows[0]]
        for k in rows[1:]:
            total.add(compute[k])
        total.reward_calls = (steps + 1) * chains
        per_chain = [{"accepted": accepted[k], "acceptance_rate": accepted[k] / steps if steps else 0.0,
                      "chain_rewards": chains_r[k], "chain_lengths": [len(x) for x in chains_ids[k]],
                      "chain_texts": chains_txt[k], "log_alphas": log_alphas[k],
                      "proposal_lengths": proposal_lengths[k]} for k in rows]
        n_acc = sum(accepted[k] for k in rows)
        info.update({"strategy": "qalign", "steps": steps, "beta": beta, **per_chain[0], "accepted": n_acc,
                     "acceptance_rate": n_acc / (steps * chains) if steps else 0.0, "burn_in": burn_in,
                     "thin": thin, "select_by": select_by})
        if chains > 1:
            info.update({"chains": per_chain, "n_chains": chains})
        results.append(StrategyResult(prompts[rows[0]], txt[idx], txt if keep_chain else [], rs, total, info))
    return results
