"""Advantages for group-sampled online RL: GRPO (group-relative) and RLOO (leave-one-out baseline).

Rewards arrive flat, `[P * G]`, in prompt-major order (the G completions of prompt 0, then prompt 1, ...), which
is how the rollout stage lays them out. Advantages are constants: they never carry gradient.

GRPO (DeepSeekMath, Shao et al. 2024; TRL 0.17 as pinned by BLEUBERI, spec objectives.md §9.1 step 2):
    Â_i = (r_i − mean_G r) / (std_G r + 1e-4)            scale="group" (TRL `scale_rewards=True`)
    Â_i =  r_i − mean_G r                                 scale="none"  (Dr. GRPO, Liu et al. 2025: no std)
    Â_i = (r_i − mean_G r) / (std_batch r + 1e-4)         scale="batch" (TRL ≥ 0.20 `scale_rewards="batch"`)
std is the *unbiased* (Bessel, ddof=1) standard deviation, as `torch.std` in TRL. Worked example (§9.1): group
rewards [0.1, 0.3, 0.2, 0.0] → [−0.3869986, 1.1609957, 0.3869986, −1.1609957]. A group whose rewards are all
equal gets Â = 0 (no signal; the 1e-4 only keeps the division finite).

RLOO (Ahmadian et al. 2024, "Back to Basics"; Kool et al. 2019): each sample's baseline is the mean reward of the
*other* G−1 samples of its prompt,
    b_i = (Σ_j r_j − r_i) / (G − 1),    Â_i = r_i − b_i = G/(G−1) · (r_i − mean_G r),
optionally normalised over the batch (TRL RLOO `normalize_advantages`). G ≥ 2 is required by both. For the
`rloo` estimator (the paper's method) the reward is first KL-penalised per sequence, r_i ← r_i − β·KL_i with
KL_i = Σ_t (log π_old − log π_ref) (losses.sequence_kl), and the baseline is taken over the penalised rewards
(Ahmadian et al. 2024 §3; TRL RLOOTrainer). `grpo_loo` (GRPO's per-token loss + k3 with leave-one-out advantages,
alignkit's former "rloo") uses the raw rewards: its KL is in the loss.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from alignkit.errors import ConfigError

Scale = Literal["group", "batch", "none"]
STD_EPS = 1e-4  # TRL 0.17's constant, added to the std (not under a square root)


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    if group_size < 2:
        raise ConfigError(f"group-relative advantages need group_size (num_generations) >= 2, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ConfigError(f"rewards must be a flat tensor whose length ({rewards.numel()}) is a multiple of "
                          f"group_size={group_size}")
    return rewards.float().view(-1, group_size)


def grpo_advantages(rewards: Tensor, group_size: int, scale: Scale = "group") -> Tensor:
    """Group-relative advantages (see module docstring); returns a flat `[P * G]` tensor."""
    g = _grouped(rewards, group_size)
    centred = g - g.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (g.std(dim=1, keepdim=True) + STD_EPS)
    elif scale == "batch":
        centred = centred / (g.flatten().std() + STD_EPS)
    elif scale != "none":
        raise ConfigError(f"advantage scale must be 'group', 'batch' or 'none', got {scale!r}")
    return centred.flatten()


def rloo_advantages(rewards: Tensor, group_size: int, normalize: bool = False) -> Tensor:
    """Leave-one-out advantages r_i − mean_{j≠i} r_j; with `normalize`, whitened over the batch
    ((Â − mean) / (std + 1e-4))."""
    g = _grouped(rewards, group_size)
    # r_i − (Σr − r_i)/(G−1) rearranged to G/(G−1)·(r_i − mean): the same value, exactly 0 for tied groups.
    adv = (group_size / (group_size - 1) * (g - g.mean(dim=1, keepdim=True))).flatten()
    if normalize:
        adv = (adv - adv.mean()) / (adv.std() + STD_EPS)
    return adv


def kl_penalized(rewards: Tensor, seq_kl: Tensor | None, beta: float) -> Tensor:
    """RLOO's reward r − β·KL per sequence (`seq_kl` None or β = 0: the rewards unchanged)."""
    if seq_kl is None or beta == 0.0:
        return rewards.float()
    if seq_kl.shape != rewards.shape:
        raise ConfigError(f"sequence KL {tuple(seq_kl.shape)} and rewards {tuple(rewards.shape)} differ in shape")
    return rewards.float() - beta * seq_kl.float().detach()


def compute_advantages(rewards: Tensor, group_size: int, estimator: str, scale: Scale = "group",
                       normalize: bool = False, seq_kl: Tensor | None = None, beta: float = 0.0) -> Tensor:
    """Dispatch by estimator name: `grpo` uses `scale`; `grpo_loo` and `rloo` use `normalize`; `rloo` subtracts
    β·`seq_kl` from the rewards before the leave-one-out baseline."""
    if estimator == "grpo":
        return grpo_advantages(rewards, group_size, scale)
    if estimator == "grpo_loo":
        return rloo_advantages(rewards, group_size, normalize)
    if estimator == "rloo":
        return rloo_advantages(kl_penalized(rewards, seq_kl, beta), group_size, normalize)
    raise ConfigError(f"unknown advantage estimator {estimator!r}; use 'grpo', 'rloo' or 'grpo_loo'")


def group_stats(rewards: Tensor, group_size: int) -> dict[str, float]:
    """Diagnostics: mean within-group std, and the fraction of groups with zero reward spread (no signal)."""
    g = _grouped(rewards, group_size)
    std = g.std(dim=1)
    return {"reward_group_std": float(std.mean()), "frac_zero_std_groups": float((std == 0).float().mean())}
