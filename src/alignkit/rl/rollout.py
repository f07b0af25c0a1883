"""One rollout step: sample G completions per prompt through the Sampler protocol, score them with any Reward,
and turn them into right-padded training tensors whose labels cover exactly the sampled tokens.

The sampled token ids are trained on as generated (EOS included when the sampler stopped on it), never re-tokenised
from text, so the log-probs of the update are those of the tokens the policy actually produced.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import PromptExample
from alignkit.data.tokenize import IGNORE_INDEX
from alignkit.decode.sampler import Compute, Sample, Sampler
from alignkit.errors import ConfigError
from alignkit.rewards.base import Reward, call_reward, reward_name, unpack_prompts
from alignkit.rewards.combine import LogSigmoidTransform
from alignkit.rl.data import as_reward_record


@dataclass
class Rollout:
    """P prompts × G samples, flat and prompt-major (sample j of prompt i at index i·G + j)."""

    records: list[PromptExample]
    group_size: int
    prompt_ids: list[list[int]]  # per prompt, as the sampler encoded it
    samples: list[Sample]
    rewards: Tensor  # [P·G] float
    reward_parts: dict[str, list[float]] = field(default_factory=dict)  # per component, for combined rewards
    reward_info: dict[str, Any] = field(default_factory=dict)
    compute: Compute = field(default_factory=Compute)
    seconds: float = 0.0
    token_rewards: list[list[float]] | None = None  # a token reward's per-token values (RewardResult.token_scores)

    @property
    def completions(self) -> list[str]:
        return [s.text for s in self.samples]

    @property
    def completion_lengths(self) -> Tensor:
        return torch.tensor([len(s.token_ids) for s in self.samples], dtype=torch.float32)

    def prompt_of(self, k: int) -> PromptExample:
        return self.records[k // self.group_size]


def encode_prompts(sampler: Sampler, records: Sequence[PromptExample]) -> list[list[int]]:
    """The prompt ids the sampler conditions on (the HF sampler exposes `encode_prompt`)."""
    enc = getattr(sampler, "encode_prompt", None)
    if enc is None:
        raise ConfigError(f"{type(sampler).__name__} cannot train: online RL needs a sampler with encode_prompt "
                          "(token ids of the prompt), e.g. alignkit.decode.hf.HFSampler")
    return [list(enc(r.prompt, i)) for i, r in enumerate(records)]


@dataclass
class Scored:
    scores: list[float]
    parts: dict[str, list[float]]  # per component, for combined rewards
    info: dict[str, Any]
    token_scores: list[list[float]] | None = None


def score(reward: Reward, records: Sequence[PromptExample], completions: Sequence[str], group_size: int,
          token_ids: Sequence[Sequence[int]] | None = None) -> Scored:
    """Rewards for prompt-major completions; each prompt's references/constraints ride along as context.

    A token-level reward (`reward.token_level`, e.g. the seq2seq RM) also gets the sampled `completion_token_ids`,
    so its per-token rewards (`token_scores`) align 1:1 with the policy's tokens; its scores are their sequence
    reduction (how RL uses either: `objective_args.token_rewards`, rl.dense)."""
    rows = [as_reward_record(r) for r in records for _ in range(group_size)]
    prompts, context = unpack_prompts(rows, {})
    if token_ids is not None and getattr(reward, "token_level", False):
        context["completion_token_ids"] = [list(t) for t in token_ids]
    result = call_reward(reward, prompts, completions, **context)
    parts: dict[str, list[float]] = {}
    # a weighted sum keeps each component's score in the attributes under the component's name
    names = [reward_name(r) for r in getattr(reward, "rewards", ())]
    if result.attributes and names:
        for k in names:
            if all(k in a for a in result.attributes):
                parts[k] = [float(a[k]) for a in result.attributes]
    return Scored(list(result.scores), parts, dict(result.info), result.token_scores)


def rollout(sampler: Sampler, reward: Reward, records: Sequence[PromptExample], *, group_size: int,
            max_new_tokens: int, temperature: float, top_p: float = 1.0, top_k: int = 0,
            stop: Sequence[str] = (), seed: int | None = None,
            group_references: Sequence[LogSigmoidTransform] = ()) -> Rollout:
    """Sample, then score. `group_references`: LSC transforms whose per-prompt reference is refitted on this
    step's groups before scoring (`reward_ref: group`, rl.lsc)."""
    start = time.perf_counter()
    before = sampler.compute.copy()
    prompt_ids = encode_prompts(sampler, records)
    grouped = sampler.sample([r.prompt for r in records], n=group_size, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p, top_k=top_k, stop=stop, seed=seed)
    samples = [s for g in grouped for s in g]
    if group_references:
        from alignkit.rl.lsc import fit_group_references

        fit_group_references(group_references, records, [s.text for s in samples], group_size)
    got = score(reward, records, [s.text for s in samples], group_size, [s.token_ids for s in samples])
    compute = sampler.compute.minus(before)
    compute.reward_calls += len(samples)
    return Rollout(list(records), group_size, prompt_ids, samples, torch.tensor(got.scores, dtype=torch.float32),
                   got.parts, got.info, compute, time.perf_counter() - start, got.token_scores)


@dataclass
class TokenBatch:
    """Right-padded `[N, T]` prompt+completion tensors; `labels` is -100 outside the sampled tokens."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def collate(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int
            ) -> TokenBatch:
    """One row per (prompt, completion) pair, padded to the batch maximum (not a fixed length)."""
    if len(prompt_ids) != len(completion_ids):
        raise ConfigError(f"collate: {len(prompt_ids)} prompts but {len(completion_ids)} completions")
    width = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True))
    n = len(prompt_ids)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    for r, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        seq = list(p) + list(c)
        ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[r, :len(seq)] = 1
        if c:
            labels[r, len(p):len(seq)] = torch.tensor(list(c), dtype=torch.long)
    return TokenBatch(ids, mask, labels)


def rollout_batch(ro: Rollout, rows: Sequence[int], pad_id: int) -> TokenBatch:
    """The token batch of the given flat sample indices."""
    return collate([ro.prompt_ids[k // ro.group_size] for k in rows], [ro.samples[k].token_ids for k in rows],
                   pad_id)
