"""One entry point for every test-time strategy: `run_strategy(name, ...)`, used by `alignkit generate`.

| name | function | needs |
|---|---|---|
| `sample` | `sample_strategy` (plain sampling; n samples, the first is the completion) | a sampler |
| `bon` | `bon.best_of_n` (BoN / MV / WMV / MBR) | a reward unless `select_by` is vote or mbr |
| `qalign` | `qalign.qalign` (MH chains) | a reward; decode() |
| `deal` | `deal.deal` (lookahead search) | a reward; logit access |
| `spec_reject` | `spec_reject.spec_reject` (best-of-n with early rejection at token checkpoints) | a reward; decode() |
| `nudge` | `nudge.nudge` | a raw base sampler with logit access + a nudging sampler |
| `urial` | `urial.urial` | a raw (base-model) sampler |
| `steer` | `sample_strategy` on a `SteeredSampler` | a steering vector |
| `guide` | `guide_strategy`: greedy sampling on a `GuidedSampler` (Guide-Align, retrieved guidelines) | a guideline library |
| `moral_filter` | `moral_filter.moral_filter` (MCM-guided decoding: keep next-token candidates scoring above a threshold) | a reward (e.g. `moral:DIR`); logit access |
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from alignkit.data.records import Prompt
from alignkit.decode.bon import best_of_n
from alignkit.decode.common import Context, StrategyResult
from alignkit.decode.deal import deal
from alignkit.decode.moral_filter import moral_filter
from alignkit.decode.nudge import nudge
from alignkit.decode.qalign import qalign
from alignkit.decode.sampler import Sampler
from alignkit.decode.spec_reject import spec_reject
from alignkit.decode.urial import urial
from alignkit.errors import ConfigError


def sample_strategy(sampler: Sampler, prompts: Sequence[Prompt], n: int = 1, *, max_new_tokens: int = 128,
                    temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
                    seed: int | None = None) -> list[StrategyResult]:
    """Plain sampling: n samples per prompt (prompt encoded once); the completion is the first sample."""
    out = sampler.sample(prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                         top_k=top_k, stop=stop, seed=seed)
    results = []
    for p, row in zip(prompts, out, strict=True):
        compute = row[0].compute
        for s in row[1:]:
            compute.add(s.compute)
        results.append(StrategyResult(p, row[0].text, [s.text for s in row] if n > 1 else [], None, compute,
                                      {"strategy": "sample", "finish_reasons": [s.finish_reason for s in row]}))
    return results


def guide_strategy(sampler: Sampler, prompts: Sequence[Prompt], n: int = 1, *, max_new_tokens: int = 512,
                   temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
                   seed: int | None = None) -> list[StrategyResult]:
    """Guide-Align stage 2 (wave2_feedback_safety.md §8.4): sampling on a `GuidedSampler` (its prompts carry the
    retrieved guidelines), greedy with up to 512 new tokens by default as the paper; each result's info holds the
    guidelines and their ids (what `alignkit safety guide-sft` trains on)."""
    if not hasattr(sampler, "guidelines_for"):
        raise ConfigError("strategy 'guide' needs a GuidedSampler (alignkit.decode.guide) around the model's sampler")
    results = sample_strategy(sampler, prompts, n, max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, top_k=top_k, stop=stop, seed=seed)
    for p, r in zip(prompts, results, strict=True):
        r.info.update(strategy="guide", guidelines=sampler.guidelines_for(p),  # type: ignore[attr-defined]
                      guideline_ids=sampler.guideline_ids(p))  # type: ignore[attr-defined]
    return results


STRATEGIES: dict[str, Callable[..., list[StrategyResult]]] = {
    "sample": sample_strategy, "bon": best_of_n, "qalign": qalign, "deal": deal, "nudge": nudge,
    "urial": urial, "steer": sample_strategy, "spec_reject": spec_reject, "guide": guide_strategy,
    "moral_filter": moral_filter,
}
NEEDS_REWARD = {"qalign", "deal", "spec_reject", "moral_filter"}


def strategy_options(name: str) -> list[str]:
    fn = STRATEGIES[name]
    skip = {"sampler", "reward", "prompts", "contexts", "base", "nudger", "lookahead_sampler"}
    return [p for p in inspect.signature(fn).parameters if p not in skip]


def run_strategy(name: str, sampler: Sampler, prompts: Sequence[Prompt], *, reward: Any = None,
                 contexts: Sequence[Context] | None = None, nudger: Sampler | None = None, **options: Any
                 ) -> list[StrategyResult]:
    """Run strategy `name` on a batch of prompts; `options` are that strategy's keyword arguments."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose from {sorted(STRATEGIES)}")
    allowed = strategy_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"strategy {name!r} has no option(s) {unknown}; its options are {allowed}")
    if name in NEEDS_REWARD and reward is None:
        raise ConfigError(f"strategy {name!r} needs a reward (--reward)")
    fn = STRATEGIES[name]
    if name in ("sample", "steer", "urial", "guide"):
        return fn(sampler, prompts, **options)
    if name == "nudge":
        if nudger is None:
            raise ConfigError("strategy 'nudge' needs a nudging model (--nudger)")
        return fn(sampler, nudger, prompts, **options)
    if name == "bon":
        if reward is None and options.get("select_by", "reward") not in ("vote", "mbr"):
            raise ConfigError("best-of-n needs a reward (--reward) unless select_by is vote or mbr")
    return fn(sampler, reward, prompts, contexts=contexts, **options)
