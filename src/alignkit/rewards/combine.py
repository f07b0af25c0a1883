"""Reward transforms and combinations. Every function here takes Rewards and returns a Reward.

* `weighted_sum(rewards, weights)`: Σ_k w_k r_k.
* `log_sigmoid_transform(reward, ref)`: the LSC transform of Wang et al. 2024, "Transforming and Combining Rewards
  for Aligning Large Language Models" (spec objectives.md §8): u(x, y) = log σ(r(x, y) − r_ref(x)). The per-prompt
  reference reward r_ref(x) is a statistic (mean, median or a quantile; the paper's default is unstated, median
  here) of the reward of reference samples for x, e.g. samples from the base SFT policy. Prompts without a
  reference fall back to the global median of the known references. u ≤ 0, concave, saturating at 0.
* `all_of(*rewards)`: logical AND of "good" events, Σ_k log σ(r_k − r_ref,k) = log Π_k P(good_k).
* `group_normalize` (GRPO's per-prompt advantage (r − mean_G)/(std_G + ε), Bessel std, ε = 1e-4 as in TRL 0.17 /
  BLEUBERI, spec §9.1), `batch_normalize`, `clip`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from alignkit.data.records import Prompt
from alignkit.errors import RewardError
from alignkit.rewards.base import (
    Reward,
    RewardResult,
    call_reward,
    context_column,
    reward_name,
    unpack_prompts,
)


def log_sigmoid(x: float) -> float:
    """log σ(x) without overflow: −softplus(−x)."""
    return -(math.log1p(math.exp(-abs(x))) + max(-x, 0.0))


def prompt_key(prompt: Prompt) -> str:
    """A hashable identity for a prompt (the text itself, or the chat as canonical JSON)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def reduce_reference(values: Sequence[float], statistic: str = "median") -> float:
    """Reduce reference-sample rewards: "mean", "median", or a quantile "q0.9" / "quantile:0.9" (linear
    interpolation between order statistics, numpy's default)."""
    if not values:
        raise RewardError("reduce_reference: no values")
    xs = sorted(float(v) for v in values)
    if statistic == "mean":
        return sum(xs) / len(xs)
    if statistic == "median":
        return float(statistics.median(xs))
    q_text = statistic.removeprefix("quantile:").removeprefix("q")
    try:
        q = float(q_text)
    except ValueError:
        raise RewardError(f"reference statistic must be mean, median or quantile:Q, got {statistic!r}") from None
    if not 0.0 <= q <= 1.0:
        raise RewardError(f"reference quantile must be in [0, 1], got {q}")
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _repeat_context(context: dict[str, Any], n: int, counts: Sequence[int]) -> dict[str, Any]:
    """Repeat each per-example context column entry `counts[i]` times (for scoring reference samples)."""
    out = {}
    for k, v in context.items():
        if k in ("reference_samples", "reference_reward"):
            continue
        if isinstance(v, Sequence) and not isinstance(v, str) and len(v) == n:
            out[k] = [v[i] for i in range(n) for _ in range(counts[i])]
        else:
            out[k] = v
    return out


def reference_rewards(reward: Reward, prompts: Sequence[Prompt], samples: Sequence[Sequence[str]],
                      statistic: str = "median", **context: Any) -> list[float | None]:
    """Per-prompt reference reward: score each prompt's reference samples (all in one reward call) and reduce them
    with `statistic`. A prompt with no samples gets None."""
    if len(samples) != len(prompts):
        raise RewardError(f"reference_rewards: {len(prompts)} prompts but {len(samples)} sample lists")
    counts = [len(s) for s in samples]
    flat_p = [p for p, c in zip(prompts, counts, strict=True) for _ in range(c)]
    flat_c = [y for s in samples for y in s]
    if not flat_c:
        return [None] * len(prompts)
    scores = call_reward(reward, flat_p, flat_c, **_repeat_context(context, len(prompts), counts)).scores
    out: list[float | None] = []
    pos = 0
    for c in counts:
        out.append(reduce_reference(scores[pos:pos + c], statistic) if c else None)
        pos += c
    return out


class WeightedSum:
    """Σ_k w_k r_k; each component's score is kept in the attributes under its name."""

    def __init__(self, rewards: Sequence[Reward], weights: Sequence[float] | None = None,
                 name: str | None = None) -> None:
        if not rewards:
            raise RewardError("weighted_sum needs at least one reward")
        weights = [1.0] * len(rewards) if weights is None else [float(w) for w in weights]
        if len(weights) != len(rewards):
            raise RewardError(f"weighted_sum: {len(rewards)} rewards but {len(weights)} weights")
        self.rewards, self.weights = list(rewards), weights
        self.name = name or "+".join(f"{w:g}*{reward_name(r)}" for r, w in zip(rewards, weights, strict=True))

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        total = [0.0] * len(completions)
        attrs: list[dict[str, Any]] = [{} for _ in completions]
        for r, w in zip(self.rewards, self.weights, strict=True):
            res = call_reward(r, prompts, completions, **context)
            for i, s in enumerate(res.scores):
                total[i] += w * s
                attrs[i][reward_name(r)] = s
        return RewardResult(total, attrs)


def weighted_sum(rewards: Sequence[Reward], weights: Sequence[float] | None = None) -> Reward:
    return WeightedSum(rewards, weights)


class LogSigmoidTransform:
    """u = log σ(r − r_ref(x)) (LSC transform, spec §8).

    r_ref for example i, first found of:
    1. `context["reference_reward"][i]` (precomputed, a float or None);
    2. `context["reference_samples"][i]` (reference completions for the prompt), scored by the wrapped reward and
       reduced with `statistic`;
    3. `ref` given as a mapping prompt -> r_ref (see `fit_reference`), looked up by prompt;
    4. `ref` given as one float for every prompt;
    else the fallback: `fallback` if given, otherwise the global median of the fitted table, otherwise the median
    of the references found in this batch. No reference at all raises RewardError. Uses of the fallback are counted
    in `info["reference_fallbacks"]`.
    """

    def __init__(self, reward: Reward, ref: float | Mapping[str, float] | None = None, statistic: str = "median",
                 fallback: float | None = None, name: str | None = None) -> None:
        self.reward, self.statistic, self.fallback = reward, statistic, fallback
        self.ref: float | dict[str, float] | None = (dict(ref) if isinstance(ref, Mapping)
                                                      else None if ref is None else float(ref))
        reduce_reference([0.0], statistic)  # validate the statistic now
        self.name = name or f"lsc({reward_name(reward)})"

    def fit_reference(self, prompts: Sequence[Prompt], samples: Sequence[Sequence[str]], **context: Any
                      ) -> dict[str, float]:
        """Compute and store the per-prompt reference table (and its global median as the fallback)."""
        prompts, context = unpack_prompts(prompts, context)
        values = reference_rewards(self.reward, prompts, samples, self.statistic, **context)
        table = {prompt_key(p): v for p, v in zip(prompts, values, strict=True) if v is not None}
        if not table:
            raise RewardError(f"reward '{self.name}': no reference samples to fit a reference reward")
        self.ref = table
        if self.fallback is None:
            self.fallback = float(statistics.median(table.values()))
        return table

    def references(self, prompts: Sequence[Prompt], **context: Any) -> tuple[list[float], int]:
        n = len(prompts)
        refs: list[float | None] = [None] * n
        given = context_column(context, "reference_reward", n, self.name)
        if given is not None:
            refs = [None if v is None else float(v) for v in given]
        samples = context_column(context, "reference_samples", n, self.name)
        if samples is not None:
            todo = [i for i in range(n) if refs[i] is None and samples[i]]
            if todo:
                sub_ctx = {k: [v[i] for i in todo] if isinstance(v, Sequence) and not isinstance(v, str)
                           and len(v) == n else v for k, v in context.items()}
                got = reference_rewards(self.reward, [prompts[i] for i in todo], [samples[i] for i in todo],
                                        self.statistic, **sub_ctx)
                for i, v in zip(todo, got, strict=True):
                    refs[i] = v
        for i in range(n):
            if refs[i] is None:
                if isinstance(self.ref, dict):
                    refs[i] = self.ref.get(prompt_key(prompts[i]))
                elif isinstance(self.ref, float):
                    refs[i] = self.ref
        missing = [i for i in range(n) if refs[i] is None]
        if missing:
            fb = self.fallback
            if fb is None:
                known = [v for v in refs if v is not None]
                if not known:
                    raise RewardError(
                        f"reward '{self.name}': no reference reward for {len(missing)} prompts; pass ref=, "
                        "context['reference_reward'] or context['reference_samples'], or call fit_reference")
                fb = float(statistics.median(known))
            for i in missing:
                refs[i] = fb
        return [float(v) for v in refs if v is not None], len(missing)

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        prompts, context = unpack_prompts(prompts, context)
        inner_ctx = {k: v for k, v in context.items() if k not in ("reference_reward", "reference_samples")}
        raw = call_reward(self.reward, prompts, completions, **inner_ctx)
        refs, fallbacks = self.references(prompts, **context)
        scores = [log_sigmoid(r - ref) for r, ref in zip(raw.scores, refs, strict=True)]
        attrs = [{"raw": r, "reference": ref} for r, ref in zip(raw.scores, refs, strict=True)]
        return RewardResult(scores, attrs, info={"reference_fallbacks": fallbacks})


def log_sigmoid_transform(reward: Reward, ref: float | Mapping[str, float] | None = None,
                          statistic: str = "median", fallback: float | None = None) -> LogSigmoidTransform:
    return LogSigmoidTransform(reward, ref, statistic, fallback)


def all_of(*rewards: Reward, ref: float | Mapping[str, float] | None = None, statistic: str = "median"
           ) -> Reward:
    """Logical AND (spec §8): the sum of log-sigmoid-transformed rewards. Rewards that are not already
    `LogSigmoidTransform`s are wrapped with `ref`/`statistic`."""
    if not rewards:
        raise RewardError("all_of needs at least one reward")
    parts = [r if isinstance(r, LogSigmoidTransform) else LogSigmoidTransform(r, ref, statistic) for r in rewards]
    return WeightedSum(parts, name="all_of(" + ",".join(reward_name(r) for r in rewards) + ")")


def _mean_std(xs: Sequence[float], unbiased: bool) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    dof = len(xs) - (1 if unbiased else 0)
    if dof <= 0:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / dof)


class GroupNormalize:
    """Per-prompt normalisation (GRPO advantage): (r − mean_G)/(std_G + eps), std with Bessel's correction.

    Groups are `context["group"][i]` when given, else identical prompts. `scale=False` only centres (Dr. GRPO).
    A group of one, or with all-equal rewards, gets 0 (no learning signal; counted in `info["flat_groups"]`)."""

    def __init__(self, reward: Reward, eps: float = 1e-4, scale: bool = True, unbiased: bool = True) -> None:
        self.reward, self.eps, self.scale, self.unbiased = reward, eps, scale, unbiased
        self.name = f"group_norm({reward_name(reward)})"

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        prompts, context = unpack_prompts(prompts, context)
        raw = call_reward(self.reward, prompts, completions, **context)
        groups = context_column(context, "group", len(completions), self.name)
        keys = groups if groups is not None else [prompt_key(p) for p in prompts]
        members: dict[Any, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            members[k].append(i)
        out = [0.0] * len(completions)
        flat = 0
        for idx in members.values():
            xs = [raw.scores[i] for i in idx]
            m, s = _mean_std(xs, self.unbiased)
            flat += len(idx) < 2 or s == 0.0
            for i in idx:
                out[i] = 0.0 if len(idx) < 2 else (raw.scores[i] - m) / (s + self.eps if self.scale else 1.0)
        attrs = [{"raw": r} for r in raw.scores]
        return RewardResult(out, attrs, info={"groups": len(members), "flat_groups": flat})


class BatchNormalize:
    """(r − mean)/(std + eps) over the whole batch (population std by default)."""

    def __init__(self, reward: Reward, eps: float = 1e-8, unbiased: bool = False) -> None:
        self.reward, self.eps, self.unbiased = reward, eps, unbiased
        self.name = f"batch_norm({reward_name(reward)})"

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        raw = call_reward(self.reward, prompts, completions, **context)
        if not raw.scores:
            return RewardResult([], [])
        m, s = _mean_std(raw.scores, self.unbiased)
        return RewardResult([(r - m) / (s + self.eps) for r in raw.scores], [{"raw": r} for r in raw.scores])


class Clip:
    """Clamp scores to [low, high] (either bound may be None)."""

    def __init__(self, reward: Reward, low: float | None = None, high: float | None = None) -> None:
        if low is not None and high is not None and low > high:
            raise RewardError(f"clip: low {low} > high {high}")
        self.reward, self.low, self.high = reward, low, high
        self.name = f"clip({reward_name(reward)})"

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        raw = call_reward(self.reward, prompts, completions, **context)
        out = []
        for r in raw.scores:
            if self.low is not None:
                r = max(r, self.low)
            if self.high is not None:
                r = min(r, self.high)
            out.append(r)
        return RewardResult(out, raw.attributes, info=raw.info)


def group_normalize(reward: Reward, eps: float = 1e-4, scale: bool = True) -> Reward:
    return GroupNormalize(reward, eps, scale)


def batch_normalize(reward: Reward, eps: float = 1e-8) -> Reward:
    return BatchNormalize(reward, eps)


def clip(reward: Reward, low: float | None = None, high: float | None = None) -> Reward:
    return Clip(reward, low, high)
