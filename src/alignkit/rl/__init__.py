"""Online RL (GRPO, RLOO, GRPO-LOO) with any reward: advantages and losses (pure maths), rollouts through the
Sampler protocol, LSC reward combination with per-prompt references, and the training loop `run_online`."""

from typing import Any

from alignkit.rl.advantages import compute_advantages, grpo_advantages, kl_penalized, rloo_advantages
from alignkit.rl.losses import aggregate, k3_kl, policy_loss, sequence_kl, sequence_policy_loss

__all__ = ["aggregate", "compute_advantages", "grpo_advantages", "k3_kl", "kl_penalized", "policy_loss",
           "rloo_advantages", "run_online", "sequence_kl", "sequence_policy_loss"]


def __getattr__(name: str) -> Any:
    """`run_online` is loaded on first use (PEP 562): the trainer pulls in Accelerate, the models and the train
    engine, which importing the maths above must not pay for (nor tie the package to, import-wise)."""
    if name == "run_online":
        from alignkit.rl.trainer import run_online

        return run_online
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
