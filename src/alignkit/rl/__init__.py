"""Online RL (GRPO, RLOO) with any reward: advantages and losses (pure maths), rollouts through the Sampler
protocol, and the training loop `run_online`."""

from alignkit.rl.advantages import compute_advantages, grpo_advantages, rloo_advantages
from alignkit.rl.losses import aggregate, k3_kl, policy_loss

__all__ = ["aggregate", "compute_advantages", "grpo_advantages", "k3_kl", "policy_loss", "rloo_advantages"]
