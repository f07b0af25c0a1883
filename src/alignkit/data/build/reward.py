"""The `reward` builder: sample n completions per prompt from a policy, score them with any Reward, and emit
listwise records (scores) or pairwise records (best vs worst, or all ordered pairs, with `margin` = score gap).

The `verifier` (ACT) and `reference` (BLEUBERI) builders are this builder with a fixed reward and a per-item check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.data.build.common import (
    BuildItem,
    SamplingSettings,
    ScoredList,
    check_format,
    drop_reason,
    records_from_scores,
    sample_batch,
)
from alignkit.data.build.runner import Outcome
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError
from alignkit.rewards.base import call_reward, reward_name


def score_items(reward: Any, items: Sequence[BuildItem], completions: Sequence[Sequence[str]]) -> list[list[float]]:
    """Score completions[i][j] of items[i] with one batched reward call, passing each item's constraints and
    references as per-example context."""
    prompts, comps, constraints, references = [], [], [], []
    for item, row in zip(items, completions, strict=True):
        for c in row:
            prompts.append(item.prompt)
            comps.append(c)
            constraints.append(item.constraints or None)
            references.append(item.references or None)
    context: dict[str, Any] = {}
    if any(c is not None for c in constraints):
        context["constraints"] = constraints
    if any(r is not None for r in references):
        context["references"] = references
    result = call_reward(reward, prompts, comps, **context)
    flat, out = list(result.scores), []
    for row in completions:
        out.append(flat[:len(row)])
        flat = flat[len(row):]
    return out


class RewardBuilder:
    """Sample n completions per prompt from `policy` and score them with any Reward.

    Args:
        policy: a Sampler (e.g. `HFSampler(model, tokenizer)`).
        reward: any Reward (`alignkit.rewards.registry.load_reward(spec)` or a callable).
        fmt: `pairwise` (best vs worst, `margin` = score gap) or `listwise` (all n with scores).
        pair_mode: `best-vs-worst` or `all` (every pair with a score gap).
        min_margin: pairs with a gap <= this are ties (skipped and counted).
        policy_name, reward_spec: strings for provenance.
    """

    name = "reward"
    keep_tied_lists = False

    def __init__(self, policy: Sampler, reward: Any, sampling: SamplingSettings | None = None, *,
                 fmt: str = "pairwise", pair_mode: str = "best-vs-worst", min_margin: float = 0.0,
                 policy_name: str = "policy", reward_spec: str | None = None) -> None:
        self.policy, self.reward = policy, reward
        self.sampling = sampling or SamplingSettings()
        self.fmt, self.pair_mode, self.min_margin = fmt, pair_mode, float(min_margin)
        self.policy_name = policy_name
        self.reward_spec = reward_spec or reward_name(reward)
        check_format(fmt, pair_mode)
        if self.min_margin < 0:
            raise ConfigError(f"min_margin must be >= 0, got {min_margin}")

    def settings(self) -> dict[str, Any]:
        return {"reward": self.reward_spec, "policy": self.policy_name, "sampling": self.sampling.as_dict(),
                "format": self.fmt, "pair_mode": self.pair_mode, "min_margin": self.min_margin}

    def provenance(self) -> dict[str, Any]:
        return {"builder": self.name, "reward": self.reward_spec, "policy": self.policy_name,
                "sampling": self.sampling.as_dict()}

    def skip_reason(self, item: BuildItem) -> str | None:
        """Why an item cannot be scored (None when it can)."""
        return None

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        usable = [i for i in items if self.skip_reason(i) is None]
        samples = sample_batch(self.policy, usable, self.sampling) if usable else []
        texts = [[s.text for s in row] for row in samples]
        scores = score_items(self.reward, usable, texts) if usable else []
        by_key = {i.key: (t, s) for i, t, s in zip(usable, texts, scores, strict=True)}
        outcomes = []
        for item in items:
            reason = self.skip_reason(item)
            if reason is not None:
                outcomes.append(Outcome(item.key, dropped=reason))
                continue
            comps, sc = by_key[item.key]
            meta = {**self.provenance(), **self.item_metadata(item)}
            records, skipped = records_from_scores(ScoredList(item, comps, sc), self.fmt, meta, self.pair_mode,
                                                   self.min_margin, self.keep_tied_lists)
            outcomes.append(Outcome(item.key, records, drop_reason(records, skipped), skipped))
        return outcomes

    def item_metadata(self, item: BuildItem) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        ident = getattr(item.source, "metadata", {}).get("id") if not isinstance(item.source, dict) else None
        if ident is not None:
            meta["prompt_id"] = ident
        return meta
