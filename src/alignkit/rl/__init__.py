"""Online RL (GRPO, RLOO, GRPO-LOO) with any reward: advantages and losses (pure maths), rollouts through the
Sampler protocol, LSC reward combination with per-prompt references, and the training loop `run_online`."""

from alignkit.rl.advantages import compute_advantages, grpo_advantages, kl_penalized, rloo_advantages
from alignkit.rl.losses import aggregate, k3_kl, policy_loss, sequence_kl, sequence_policy_loss

__all__ = ["aggregate", "compute_advantages", "grpo_advantages", "k3_kl", "kl_penalized", "policy_loss",
           "rloo_advantages", "sequence_kl", "sequence_policy_loss"]
