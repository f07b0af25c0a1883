"""Online-RL settings: the `objective_args` of a `TrainConfig` whose objective is `grpo`, `rloo` or `grpo_loo`.

They live in `objective_args` (typed and checked here, so a typo still fails loudly) to keep `TrainConfig` the one
config of `alignkit train`. Shared keys keep their TrainConfig meaning: `batch_size` = prompts per micro-batch,
`grad_accum` micro-batches per optimiser step (so one rollout step samples `batch_size × grad_accum` prompts per
process, each `num_generations` times), `beta` the KL weight, `max_steps` the number of rollout steps, `lr`,
`lora`, `reference`, `seed`, `save_every`, `resume`.

Defaults are TRL 0.17's GRPOConfig (what BLEUBERI ran, spec objectives.md §9.1) except where CPU-sized runs need
otherwise (completion length); RLOO's follow TRL's RLOOConfig (β 0.05, no std scaling; its loss is per sequence,
so `loss_type` does not apply). `grpo_loo` is GRPO's per-token loss with leave-one-out advantages (what alignkit
called "rloo" before it followed the RLOO paper); it defaults to the sequence aggregation and β 0.05.

LSC (spec objectives.md §8, Wang et al. 2024): `reward_transform: log_sigmoid` replaces the reward by
Σ_k log σ(r_k − r_ref,k(x)), the AND of the K configured rewards, each against a per-prompt reference reward:
`reward_ref: base` (default, the spec's recommendation) draws `reward_ref_samples` completions per prompt from the
reference policy once, before the first update, and reduces each reward's scores with `reward_ref_statistic`
(mean, median or qQ; the paper's choice is unstated, spec §14, so the library's median); `reward_ref: group`
takes the statistic of the step's own G samples of the prompt instead (no extra sampling, but r_ref moves with π).

Token rewards (spec wave2_feedback_safety.md §3.3, rl.dense): a reward that returns per-token values (the seq2seq RM)
is used through its sequence score (`token_rewards: sequence`, the spec's GRPO/RLOO default) or token by token
(`token_rewards: dense`: per-token advantages, returns-to-go of group-centred token rewards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignkit.config import from_dict
from alignkit.errors import ConfigError
from alignkit.rl.losses import resolve_aggregation

ONLINE_OBJECTIVES = ("grpo", "rloo", "grpo_loo")
REFERENCE_SOURCES = ("base", "group")


@dataclass
class OnlineArgs:
    """Keys under `objective_args` for `--objective grpo|rloo` (see docs/rl.md)."""

    # reward: one spec (`csr`, `ifeval`, `bleu`, `keyword:...`, `module:function`) or several, combined
    reward: str | list[str] = "csr"
    reward_weights: list[float] = field(default_factory=list)  # weighted sum of several rewards; default 1 each
    reward_transform: str = "none"  # "none" | "log_sigmoid" (spec §8: Σ_k log σ(r_k − r_ref,k(x)))
    reward_ref: str = "base"  # r_ref(x) from: base (reference-policy samples, once) | group (the step's G samples)
    reward_ref_statistic: str = "median"  # mean | median | qQ (quantile, e.g. q0.75) of those samples' rewards
    reward_ref_samples: int = 4  # base: reference completions per prompt
    # rollouts
    num_generations: int = 8  # G, completions per prompt (≥ 2)
    max_new_tokens: int = 64
    temperature: float = 0.9
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)
    # optimisation
    num_iterations: int = 1  # μ: optimisation passes over each rollout batch (π_old = sampler policy)
    epsilon: float = 0.2  # ε_low
    epsilon_high: float | None = None  # ε_high (DAPO clip-higher); None = epsilon
    loss_type: str = ""  # grpo/grpo_loo: token (bnpo) | sequence (grpo) | dr_grpo; "" = bnpo for grpo, else sequence
    scale_rewards: str = ""  # grpo: group | batch | none (Dr. GRPO); "" = group for grpo
    normalize_advantages: bool = False  # rloo, grpo_loo: whiten advantages over the batch
    token_rewards: str = "sequence"  # sequence (advantage of the sequence score) | dense (per-token; rl.dense)
    # logging
    log_samples_every: int = 1  # write the step's rollouts to samples.jsonl every N steps (0 = never)
    samples_per_log: int = 8  # how many rollouts per logged step
    # prompts
    max_prompts: int = 0  # use only the first N prompts (0 = all)
    select: str = "none"  # BLEUBERI selection by the base model's reward: none | hard | easy | medium | random
    select_num: int = 0  # prompts to keep (required when select is not none)
    select_max_new_tokens: int = 0  # 0 = max_new_tokens
    select_temperature: float = 0.7  # BLEUBERI's selection sampling: temperature 0.7, top-p 0.9
    select_top_p: float = 0.9

    def resolved_loss_type(self, objective: str) -> str:
        return resolve_aggregation(self.loss_type or ("token" if objective == "grpo" else "sequence"))

    def resolved_scale(self) -> str:
        return self.scale_rewards or "group"

    def reward_specs(self) -> list[str]:
        return [self.reward] if isinstance(self.reward, str) else list(self.reward)

    def validate(self) -> None:
        if self.num_generations < 2:
            raise ConfigError(f"objective_args.num_generations must be >= 2 (group baselines), got {self.num_generations}")
        if self.max_new_tokens < 1:
            raise ConfigError("objective_args.max_new_tokens must be >= 1")
        if self.num_iterations < 1:
            raise ConfigError("objective_args.num_iterations must be >= 1")
        if self.temperature <= 0:
            raise ConfigError("objective_args.temperature must be > 0 for on-policy sampling")
        if self.scale_rewards not in ("", "group", "batch", "none"):
            raise ConfigError(f"objective_args.scale_rewards must be group, batch or none, got {self.scale_rewards!r}")
        if self.token_rewards not in ("sequence", "dense"):
            raise ConfigError(f"objective_args.token_rewards must be sequence or dense, got {self.token_rewards!r}")
        if self.reward_transform not in ("none", "log_sigmoid"):
            raise ConfigError(f"objective_args.reward_transform must be none or log_sigmoid, got {self.reward_transform!r}")
        if self.reward_ref not in REFERENCE_SOURCES:
            raise ConfigError(f"objective_args.reward_ref must be one of {REFERENCE_SOURCES} (the per-prompt reference "
                              f"reward of LSC, spec §8; a global constant is not the paper's method), got "
                              f"{self.reward_ref!r}")
        from alignkit.errors import RewardError
        from alignkit.rewards.combine import reduce_reference

        try:
            reduce_reference([0.0], self.reward_ref_statistic)
        except RewardError as e:
            raise ConfigError(f"objective_args.reward_ref_statistic: {e}") from None
        if self.reward_ref_samples < 1:
            raise ConfigError("objective_args.reward_ref_samples must be >= 1")
        specs = self.reward_specs()
        if not specs:
            raise ConfigError("objective_args.reward is empty")
        if self.reward_weights and len(self.reward_weights) != len(specs):
            raise ConfigError(f"objective_args.reward_weights has {len(self.reward_weights)} weights for "
                              f"{len(specs)} rewards")
        resolve_aggregation(self.loss_type or "token")
        from alignkit.rl.select import MODES

        if self.select != "none" and self.select not in MODES:
            raise ConfigError(f"objective_args.select must be none or one of {MODES}, got {self.select!r}")
        if self.select != "none" and self.select_num < 1:
            raise ConfigError("objective_args.select_num must be >= 1 when select is set")


def online_args(objective: str, objective_args: dict[str, Any]) -> OnlineArgs:
    """Parse and validate `objective_args` for an online objective (unknown keys are errors)."""
    if objective not in ONLINE_OBJECTIVES:
        raise ConfigError(f"{objective!r} is not an online objective; use one of {ONLINE_OBJECTIVES}")
    args = dict(objective_args)
    args.pop("beta", None)  # TrainConfig.beta is the KL weight; accept it here too
    a = from_dict(OnlineArgs, args, prefix="objective_args.")
    a.validate()
    if objective == "rloo" and a.loss_type not in ("", "sequence", "grpo"):
        raise ConfigError(f"objective_args.loss_type={a.loss_type!r} does not apply to rloo, whose loss is one "
                          "clipped ratio per completion (Ahmadian et al. 2024); use objective grpo_loo for GRPO's "
                          "per-token loss with leave-one-out advantages")
    return a
