"""SteerLM builders (spec wave2_selfalign_merge.md §7): v1 attribute-conditioned SFT data from scored records, and
SteerLM 2.0 groups (samples of the v1 model with their log target weights).

`steerlm` (v1): scored rows `{prompt, completion, attributes: {helpfulness: 3, ...}}` → SFT rows whose prompt
carries the rounded attribute string in its system message (`alignkit.data.steerlm`), all qualities kept.

`steerlm2`: for each prompt and target attribute vector a (the prompt row's `attributes`, else `targets`):
  1. n samples y_i ~ Q'(· | a, x) from the SteerLM v1 policy on the conditioned prompt;
  2. ℓ^{Q'}_i = log Q'(y_i|a,x) and ℓ^P_i = log P(y_i|x) (the SFT model on the plain prompt), summed log-probs
     through the Sampler protocol's `score_logprobs`;
  3. â_i = the attribute reward's predictions (`RewardResult.attributes`), ℓ^A_i = log P(a|x,y_i) by the
     discretised-Gaussian rule (`attribute_log_likelihood`, σ = 1);
  4. a listwise record on the conditioned prompt with `scores` = ℓ^A + ℓ^P − ℓ^{Q'} (train with `steerlm2`,
     reference = Q') and the three terms in metadata (`logp_attr`, `logp_sft`, `logp_init`, the spec's columns).
Defaults: n = 8 (spec [uncertain]); sampling at temperature 1 (an importance sampler needs the model's own
distribution, so `score_logprobs` is at temperature 1 whatever the sampling settings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alignkit.data.build.common import BuildItem, SamplingSettings, sample_batch
from alignkit.data.build.runner import Outcome
from alignkit.data.records import ListwiseExample, ScoredExample
from alignkit.data.steerlm import (
    HELPSTEER2_ORDER,
    attribute_log_likelihood,
    attribute_string,
    parse_attribute_string,
    steerlm2_log_weight,
    steerlm_sft,
    with_attributes,
)
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError, DataError
from alignkit.rewards.base import Reward, check_result


def scored_items(records: Sequence[ScoredExample]) -> list[BuildItem]:
    """Scored records as build items, keyed by id or by a hash of prompt, completion and attributes."""
    from alignkit.data.build.common import prompt_hash

    items = []
    for r in records:
        ident = r.metadata.get("id")
        key = f"id:{ident}" if ident not in (None, "") else "sha:" + prompt_hash(
            [r.prompt, r.completion, sorted(r.attributes.items())])  # type: ignore[list-item]
        items.append(BuildItem(key, r.prompt, {"record": r}))
    return items


class SteerLMBuilder:
    """SteerLM v1: scored records → attribute-conditioned SFT records."""

    name = "steerlm"

    def __init__(self, attributes: Sequence[str] | None = None) -> None:
        self.attributes = list(attributes) if attributes else None

    def settings(self) -> dict[str, Any]:
        return {"attributes": self.attributes}

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        out = []
        for item in items:
            assert isinstance(item.source, dict)
            try:
                out.append(Outcome(item.key, list(steerlm_sft([item.source["record"]], self.attributes))))
            except ValueError as e:
                raise DataError(str(e).replace("record 0", f"item {item.key}")) from None
        return out


def _targets(value: Mapping[str, float] | str | None) -> dict[str, float] | None:
    if value is None or isinstance(value, Mapping):
        return dict(value) if value else None
    return parse_attribute_string(value)


class SteerLM2Builder:
    """SteerLM 2.0 groups (module docstring)."""

    name = "steerlm2"

    def __init__(self, policy: Sampler, attribute_reward: Reward, sft: Sampler | None = None,
                 sampling: SamplingSettings | None = None, targets: Mapping[str, float] | str | None = None,
                 sigma: float = 1.0, policy_name: str = "", sft_name: str = "", reward_spec: str = "") -> None:
        self.policy, self.reward, self.sft = policy, attribute_reward, sft or policy
        self.sampling = sampling or SamplingSettings(n=8)
        if self.sampling.n < 2:
            raise ConfigError(f"steerlm2 needs n >= 2 samples per prompt (a group to weight), got {self.sampling.n}")
        self.targets, self.sigma = _targets(targets), float(sigma)
        self.names = {"policy": policy_name, "sft_model": sft_name or policy_name, "reward": reward_spec}

    def settings(self) -> dict[str, Any]:
        return {**self.names, "sampling": self.sampling.as_dict(), "targets": self.targets, "sigma": self.sigma}

    def _target(self, item: BuildItem) -> dict[str, float]:
        meta = getattr(item.source, "metadata", None) or {}
        target = _targets(meta.get("attributes")) or self.targets
        if not target:
            raise ConfigError(f"steerlm2: prompt {item.key} has no `attributes` and no default targets were given "
                              "(--attributes helpfulness:4,...)")
        return target

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        targets = [self._target(i) for i in items]
        conditioned = [BuildItem(i.key, with_attributes(i.prompt, attribute_string(t)), i.source)
                       for i, t in zip(items, targets, strict=True)]
        samples = sample_batch(self.policy, conditioned, self.sampling)
        n = self.sampling.n
        flat_cond = [c.prompt for c in conditioned for _ in range(n)]
        flat_plain = [i.prompt for i in items for _ in range(n)]
        texts = [s.text for row in samples for s in row]
        logp_init = [sum(v) for v in self.policy.score_logprobs(flat_cond, texts)]
        logp_sft = [sum(v) for v in self.sft.score_logprobs(flat_plain, texts)]
        result = check_result(self.reward.name, self.reward(flat_plain, texts), len(texts))
        if result.attributes is None:
            raise ConfigError(f"steerlm2: reward {self.reward.name!r} returns no per-attribute predictions; use a "
                              "multi-attribute reward model (e.g. rm:DIR trained with HelpSteer2 attributes)")
        outcomes = []
        for j, (item, cond, target) in enumerate(zip(items, conditioned, targets, strict=True)):
            names = [a for a in HELPSTEER2_ORDER if a in target] + sorted(a for a in target
                                                                          if a not in HELPSTEER2_ORDER)
            rows = range(j * n, (j + 1) * n)
            try:
                pred = [[float(result.attributes[r][a]) for a in names] for r in rows]
            except KeyError as e:
                raise ConfigError(f"steerlm2: reward {self.reward.name!r} does not predict attribute {e}") from None
            want = [round(min(max(float(target[a]), 0), 4)) for a in names]
            l_attr = [attribute_log_likelihood(want, p, self.sigma) for p in pred]
            scores = [steerlm2_log_weight(l_attr[k], logp_sft[r], logp_init[r]) for k, r in enumerate(rows)]
            meta = {"builder": self.name, "attributes": attribute_string(target), "logp_attr": l_attr,
                    "logp_sft": [logp_sft[r] for r in rows], "logp_init": [logp_init[r] for r in rows],
                    **{k: v for k, v in self.names.items() if v}}
            outcomes.append(Outcome(item.key, [ListwiseExample(cond.prompt, [texts[r] for r in rows], scores,
                                                               meta)]))
        return outcomes
