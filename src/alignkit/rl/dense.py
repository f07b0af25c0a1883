"""Dense (per-token) rewards in online RL: per-token advantages for GRPO, GRPO-LOO and RLOO (issue 19 item 3; spec
wave2_feedback_safety.md §3.3).

A token reward (the seq2seq RM, `rewards.seq2seq`) returns one reward per sampled token in
`RewardResult.token_scores`, its `scores` being their sequence reduction. `objective_args.token_rewards` picks how
the online loop uses them:

* `sequence` (default, the spec's GRPO/RLOO form): the advantage comes from the sequence score
  R(y) = (1/|y|) Σ_t r_t (or Σ_t r_t with `seq2seq:DIR:sum`) and is broadcast to every token
  (`rl.advantages`); the per-token values only ride along.
* `dense`: every token gets its own advantage, the return-to-go of group-centred token rewards. This is the spec's
  PPO form ("per-token reward vector …, GAE/returns as usual", §3.3) with the group baseline of GRPO in place of
  a value function, i.e. DeepSeekMath's process-supervision GRPO (Shao et al. 2024, §4.1.3) with one step per
  token:

      GRPO:      r̃_{i,t} = (r_{i,t} − mean(R_g)) / (std(R_g) + 1e-4),   R_g = every token reward of the group
      GRPO-LOO:  r̃_{i,t} =  r_{i,t} − mean(R_{g∖i})                      (the other G−1 samples' token rewards)
      RLOO:      as GRPO-LOO on r'_{i,t} = r_{i,t} − β·(log π_old − log π_ref)_{i,t}  (the spec's PPO reward, α = 1)
      Â_{i,t} = Σ_{s ≥ t} r̃_{i,s}

  `scale_rewards` (GRPO) chooses the std: the group's tokens (`group`, default), the batch's (`batch`) or none
  (`none`); `normalize_advantages` (GRPO-LOO, RLOO) whitens every token advantage over the batch. std is unbiased
  (Bessel), as in `rl.advantages`. A group whose token rewards are all equal gets r̃ = 0 everywhere. RLOO's loss
  then takes one clipped ratio per token, summed over the completion's tokens and averaged over completions, so at
  μ = 1 token t of completion i gets the gradient −Â_{i,t}/N (RLOO's per-sequence scale, not down-weighted by
  length).

Dense advantages are ragged: one tensor per sample, as long as its sampled tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from alignkit.errors import ConfigError, RewardError
from alignkit.rewards.seq2seq import ppo_token_rewards
from alignkit.rl.advantages import STD_EPS

TOKEN_REWARD_MODES = ("sequence", "dense")
Advantages = Tensor | list[Tensor]  # [P·G] (sequence) or one [|y_i|] tensor per sample (dense)


def returns_to_go(values: Tensor) -> Tensor:
    """Σ_{s ≥ t} values_s for every t (γ = 1)."""
    return values.flip(0).cumsum(0).flip(0)


def _groups(token_rewards: Sequence[Sequence[float]], group_size: int) -> list[list[Tensor]]:
    if group_size < 2:
        raise ConfigError(f"group-relative advantages need group_size (num_generations) >= 2, got {group_size}")
    if len(token_rewards) % group_size:
        raise ConfigError(f"{len(token_rewards)} token-reward rows is not a multiple of group_size={group_size}")
    rows = [torch.tensor([float(v) for v in r], dtype=torch.float32) for r in token_rewards]
    return [rows[s:s + group_size] for s in range(0, len(rows), group_size)]


def _whiten(adv: list[Tensor]) -> list[Tensor]:
    flat = torch.cat(adv) if adv else torch.zeros(0)
    if flat.numel() < 2:
        return adv
    mean, std = flat.mean(), flat.std()
    return [(a - mean) / (std + STD_EPS) for a in adv]


def dense_grpo_advantages(token_rewards: Sequence[Sequence[float]], group_size: int, scale: str = "group"
                          ) -> list[Tensor]:
    """GRPO's per-token advantages from per-token rewards, prompt-major rows (see module docstring)."""
    if scale not in ("group", "batch", "none"):
        raise ConfigError(f"advantage scale must be 'group', 'batch' or 'none', got {scale!r}")
    groups = _groups(token_rewards, group_size)
    every = [torch.cat(g) for g in groups]
    batch_std = torch.cat(every).std() if sum(e.numel() for e in every) > 1 else torch.tensor(0.0)
    out: list[Tensor] = []
    for g, flat in zip(groups, every, strict=True):
        mean = flat.mean() if flat.numel() else torch.tensor(0.0)
        if scale == "group":
            div = (flat.std() if flat.numel() > 1 else torch.tensor(0.0)) + STD_EPS
        else:
            div = batch_std + STD_EPS if scale == "batch" else torch.tensor(1.0)
        out.extend(returns_to_go((r - mean) / div) for r in g)
    return out


def dense_loo_advantages(token_rewards: Sequence[Sequence[float]], group_size: int, normalize: bool = False
                         ) -> list[Tensor]:
    """Leave-one-out per-token advantages: each token reward minus the mean token reward of the other samples of
    its group, then the return-to-go; `normalize` whitens over the batch's tokens (see module docstring)."""
    out: list[Tensor] = []
    for g in _groups(token_rewards, group_size):
        total, count = sum(float(r.sum()) for r in g), sum(r.numel() for r in g)
        for r in g:
            others = count - r.numel()
            base = (total - float(r.sum())) / others if others else 0.0
            out.append(returns_to_go(r - base))
    return _whiten(out) if normalize else out


def kl_penalized_tokens(token_rewards: Sequence[Sequence[float]], token_kl: Sequence[Sequence[float]] | None,
                        beta: float) -> list[list[float]]:
    """RLOO's per-token reward r_t − β·(log π_old − log π_ref)_t (`ppo_token_rewards` with α = 1)."""
    if token_kl is None or beta == 0.0:
        return [list(r) for r in token_rewards]
    if len(token_kl) != len(token_rewards):
        raise ConfigError(f"{len(token_kl)} per-token KL rows for {len(token_rewards)} token-reward rows")
    return [ppo_token_rewards(r, k, [0.0] * len(k), alpha=1.0, beta_kl=beta)
            for r, k in zip(token_rewards, token_kl, strict=True)]


def dense_advantages(token_rewards: Sequence[Sequence[float]], group_size: int, estimator: str, *,
                     scale: str = "group", normalize: bool = False,
                     token_kl: Sequence[Sequence[float]] | None = None, beta: float = 0.0) -> list[Tensor]:
    """Dispatch by estimator, as `rl.advantages.compute_advantages` does for sequence rewards."""
    if estimator == "grpo":
        return dense_grpo_advantages(token_rewards, group_size, scale)
    if estimator == "grpo_loo":
        return dense_loo_advantages(token_rewards, group_size, normalize)
    if estimator == "rloo":
        return dense_loo_advantages(kl_penalized_tokens(token_rewards, token_kl, beta), group_size, normalize)
    raise ConfigError(f"unknown advantage estimator {estimator!r}; use 'grpo', 'rloo' or 'grpo_loo'")


def check_token_rewards(token_rewards: Sequence[Sequence[float]] | None, token_ids: Sequence[Sequence[int]],
                        reward: str) -> list[list[float]]:
    """Dense mode needs one reward per sampled token of every sample."""
    if token_rewards is None:
        raise RewardError(f"objective_args.token_rewards=dense needs a reward that returns per-token rewards "
                          f"(RewardResult.token_scores, e.g. seq2seq:DIR); reward {reward!r} returned none")
    for k, (r, ids) in enumerate(zip(token_rewards, token_ids, strict=True)):
        if len(r) != len(ids):
            raise RewardError(f"reward {reward!r} returned {len(r)} token rewards for sample {k}'s {len(ids)} "
                              "sampled tokens; token rewards must align 1:1 with the policy's tokens")
    return [list(r) for r in token_rewards]


def masked_rows(values: Tensor, mask: Tensor) -> list[list[float]]:
    """The masked entries of each row of `[N, T]` values, left to right (per-sample token values)."""
    return [values[i][mask[i]].tolist() for i in range(values.shape[0])]


def micro_advantages(advantages: Advantages, rows: Sequence[int], mask: Tensor) -> Tensor:
    """The advantages of a micro-batch: `[n]` for sequence advantages, `[n, T]` on the mask's positions (zeros
    elsewhere) for dense ones."""
    if isinstance(advantages, Tensor):
        return advantages[list(rows)]
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    parts = [advantages[k] for k in rows]
    for i, a in enumerate(parts):
        if int(mask[i].sum()) != a.numel():
            raise ConfigError(f"sample {rows[i]}: {a.numel()} token advantages for {int(mask[i].sum())} tokens")
    if parts:
        out[mask.bool()] = torch.cat(parts).to(mask.device)
    return out


def advantage_abs(advantages: Advantages) -> float:
    """Mean |Â| (over samples, or over every token for dense advantages)."""
    if isinstance(advantages, Tensor):
        return float(advantages.abs().mean())
    flat = torch.cat(advantages) if advantages else torch.zeros(0)
    return float(flat.abs().mean()) if flat.numel() else 0.0


def sample_advantage(advantages: Advantages, k: int) -> float:
    """One number per sample for samples.jsonl: Â_k, or Â_{k,1} (the whole completion's return) when dense."""
    a = advantages[k]
    return float(a[0]) if a.dim() and a.numel() else float(a) if not a.dim() else 0.0
