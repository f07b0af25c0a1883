"""Attribute steerability check for SteerLM models (spec wave2_selfalign_merge.md §7, issue 19 item 5): asking for a
higher value of one attribute (verbosity, helpfulness, …) should move a multi-attribute reward model's score of
that attribute up.

For each prompt, two greedy generations from the same attribute-conditioned policy differ only in the requested
value of `attribute` (`low` vs `high`, every other attribute at `base`); the attribute reward scores both
answers. Reported: the mean paired difference high − low of the scored attribute with a paired-bootstrap CI over
prompts (`alignkit.evaluate.stats.paired_bootstrap`), the share of prompts where it moved the requested way, and
the same for every other attribute the reward predicts (side effects). `contexts` (one dict per prompt, e.g. the
suite's `constraints`) reach the reward, so a verifier such as `csr` can stand for correctness; with
`score_as_attribute` the reward's scalar score is the requested attribute even when it also reports attributes
(CSR's per-constraint summary is not an attribute prediction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.data.records import Prompt
from alignkit.data.steerlm import attribute_string, with_attributes
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError
from alignkit.evaluate.stats import Estimate, paired_bootstrap, proportion_ci
from alignkit.rewards.base import Reward, call_reward, reward_name

DEFAULT_BASE = {"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 2}


@dataclass
class SteeringCheck:
    attribute: str
    low: float
    high: float
    shift: dict[str, Estimate]  # per scored attribute: mean(high) − mean(low), paired over prompts
    moved_up: Estimate  # share of prompts whose `attribute` score rose
    samples: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "low": self.low, "high": self.high,
                "shift": {k: v.as_dict() for k, v in self.shift.items()}, "moved_up": self.moved_up.as_dict()}


def attribute_steering_check(policy: Sampler, reward: Reward, prompts: Sequence[Prompt], attribute: str, *,
                             low: float = 0, high: float = 4, base: Mapping[str, float] | None = None,
                             max_new_tokens: int = 128, seed: int = 0, n_resamples: int = 2000,
                             contexts: Sequence[Mapping[str, Any]] | None = None,
                             score_as_attribute: bool = False) -> SteeringCheck:
    """Generate at `attribute=low` and `=high` (greedy), score with `reward`, compare paired (module docstring)."""
    if not prompts:
        raise ConfigError("attribute_steering_check needs at least one prompt")
    if contexts is not None and len(contexts) != len(prompts):
        raise ConfigError(f"{len(contexts)} reward contexts for {len(prompts)} prompts")
    keys = sorted({k for c in contexts or [] for k in c})
    context = {k: [c.get(k) for c in contexts or []] for k in keys}
    attrs = dict(DEFAULT_BASE if base is None else base)
    conds = {v: [with_attributes(p, attribute_string({**attrs, attribute: v})) for p in prompts] for v in (low, high)}
    texts = {v: [row[0].text for row in policy.sample(c, n=1, max_new_tokens=max_new_tokens, temperature=0.0,
                                                      seed=seed)] for v, c in conds.items()}
    plain = list(prompts)
    results = {v: call_reward(reward, plain, t, **context) for v, t in texts.items()}

    def values(v: float) -> dict[str, list[float]]:
        r = results[v]
        if r.attributes is None or score_as_attribute:  # a scalar reward stands for the requested attribute
            return {attribute: [float(s) for s in r.scores]}
        return {k: [float(a[k]) for a in r.attributes] for k in r.attributes[0]}

    lo, hi = values(low), values(high)
    if attribute not in hi:
        raise ConfigError(f"reward {reward_name(reward)!r} predicts {sorted(hi)}, not {attribute!r}")
    shift = {k: paired_bootstrap(hi[k], lo[k], seed=seed, n_resamples=n_resamples) for k in hi}
    moved = proportion_ci([h > lw for h, lw in zip(hi[attribute], lo[attribute], strict=True)], seed=seed,
                          n_resamples=n_resamples)
    samples = [{"prompt": p, "low": texts[low][i], "high": texts[high][i],
                "score_low": lo[attribute][i], "score_high": hi[attribute][i]} for i, p in enumerate(prompts)]
    return SteeringCheck(attribute, float(low), float(high), shift, moved, samples)
