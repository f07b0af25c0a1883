"""LSC rewards for online RL (Wang et al. 2024, "Transforming and Combining Rewards"; spec objectives.md §8).

With K rewards r_1..r_K the training reward is the logical AND of their "good" events,

    u(x, y) = Σ_k log σ(r_k(x, y) − r_ref,k(x)) = log Π_k P(y is good on property k),

built from the library's `log_sigmoid_transform` (one per reward) and `all_of` (their sum), so online RL and
offline use share one implementation. The reference reward r_ref,k(x) is per prompt and per reward:

* `base` (default; the spec's recommendation): `n` completions per prompt sampled once from the initial policy
  π₀ (the reference policy of the KL term, before any update), scored by r_k and reduced with `statistic`
  (mean, median or a quantile qQ). Computed offline with no gradient, as the paper prescribes.
* `group`: the statistic of the step's own G samples for the prompt (no extra sampling; r_ref then moves with
  the policy, so u measures "better than my typical sample", not "better than π₀").

Worked example (spec §8): r − r_ref = 1 gives u = log σ(1) = −0.3132617; AND with a second reward at r − r_ref =
−1 gives −0.3132617 − 1.3132617 = −1.6265234.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.data.records import PromptExample
from alignkit.decode.sampler import Sampler, seed_for
from alignkit.rewards.base import Reward
from alignkit.rewards.combine import (
    LogSigmoidTransform,
    all_of,
    log_sigmoid_transform,
    prompt_key,
    weighted_sum,
)
from alignkit.rl.data import as_reward_record

BASE_SEED_KEY = 0x15C  # keeps the reference samples' random stream apart from the rollouts' (seed_for(seed, step))


def lsc_reward(rewards: Sequence[Reward], weights: Sequence[float] | None = None, statistic: str = "median"
               ) -> tuple[Reward, list[LogSigmoidTransform]]:
    """The AND-combination Σ_k log σ(r_k − r_ref,k) (`all_of`), or Σ_k w_k log σ(...) when weights are given; and
    the per-reward transforms, whose per-prompt references `fit_base_references` / `fit_group_references` set."""
    parts = [log_sigmoid_transform(r, statistic=statistic) for r in rewards]
    combined = weighted_sum(parts, list(weights)) if weights else all_of(*parts)
    return combined, parts


def _fit(parts: Sequence[LogSigmoidTransform], records: Sequence[PromptExample],
         samples: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    # identical prompts (a prompt drawn twice in one step) pool their samples: one reference per prompt key
    pooled: dict[str, tuple[PromptExample, list[str]]] = {}
    for rec, ys in zip(records, samples, strict=True):
        pooled.setdefault(prompt_key(rec.prompt), (rec, []))[1].extend(ys)
    rows = [as_reward_record(rec) for rec, _ in pooled.values()]
    groups = [ys for _, ys in pooled.values()]
    return [p.fit_reference(rows, groups) for p in parts]


def fit_base_references(parts: Sequence[LogSigmoidTransform], sampler: Sampler, records: Sequence[PromptExample],
                        *, n: int, max_new_tokens: int, temperature: float, top_p: float = 1.0, top_k: int = 0,
                        stop: Sequence[str] = (), seed: int = 0, batch_size: int = 16) -> list[dict[str, float]]:
    """Sample `n` completions per prompt from the sampler's current (initial) policy and fit every transform's
    per-prompt reference table on them; returns the tables (prompt key -> r_ref), one per reward."""
    samples: list[list[str]] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        out = sampler.sample([r.prompt for r in chunk], n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_p=top_p, top_k=top_k, stop=stop, seed=seed_for(seed, BASE_SEED_KEY, start))
        samples.extend([s.text for s in group] for group in out)
    return _fit(parts, records, samples)


def fit_group_references(parts: Sequence[LogSigmoidTransform], records: Sequence[PromptExample],
                         completions: Sequence[str], group_size: int) -> list[dict[str, float]]:
    """`reward_ref: group`: each prompt's reference is the statistic of its own G prompt-major completions."""
    groups = [list(completions[i * group_size:(i + 1) * group_size]) for i in range(len(records))]
    return _fit(parts, records, groups)


def reference_rows(parts: Sequence[LogSigmoidTransform], records: Sequence[PromptExample]) -> list[dict[str, Any]]:
    """One JSON-able row per prompt with its reference reward under each transform (for lsc_references.jsonl)."""
    out = []
    for rec in records:
        key = prompt_key(rec.prompt)
        refs = {p.name: (p.ref.get(key) if isinstance(p.ref, dict) else p.ref) for p in parts}
        out.append({"prompt": key, "reference_reward": refs})
    return out
