"""Rewards (DESIGN.md protocol 3): `reward(prompts, completions, **context) -> RewardResult`.

Verifiers (`verifiers`), reference metrics (`reference`), reward models and the implicit DPO reward (`model`),
transforms and combinations (`combine`), RM losses (`losses`, `pal`), RM evaluation (`evaluate`), and
`load_reward(spec)` (`registry`). Names are imported lazily so `import alignkit.rewards` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from alignkit.rewards.base import (
    FunctionReward,
    Reward,
    RewardResult,
    call_reward,
    check_result,
    context_column,
    reward_name,
    unpack_prompts,
)

_LAZY = {
    "load_reward": "registry", "SPEC_HELP": "registry",
    "ConstraintReward": "verifiers", "RegexReward": "verifiers", "KeywordReward": "verifiers",
    "LengthReward": "verifiers", "JsonReward": "verifiers", "ifeval_reward": "verifiers", "csr_reward": "verifiers",
    "check_constraints": "verifiers", "parse_constraints": "verifiers", "Constraint": "verifiers",
    "ReferenceReward": "reference", "bleu_reward": "reference", "chrf_reward": "reference",
    "sentence_bleu": "reference", "corpus_bleu": "reference", "sentence_chrf": "reference",
    "weighted_sum": "combine", "log_sigmoid_transform": "combine", "all_of": "combine",
    "group_normalize": "combine", "batch_normalize": "combine", "clip": "combine",
    "reference_rewards": "combine", "LogSigmoidTransform": "combine", "WeightedSum": "combine",
    "RewardModel": "model", "implicit_dpo_reward": "model", "ImplicitDPOReward": "model",
    "with_principles": "model",
    "bt_loss": "losses", "listwise_bt_loss": "losses", "regression_loss": "losses", "helpsteer2_scalar": "losses",
    "min_norm_weights": "losses", "more_task_weights": "losses", "more_loss": "losses",
    "PALA": "pal", "PALB": "pal", "pal_loss": "pal", "fit_new_user": "pal",
    "pairwise_accuracy": "evaluate", "pairwise_calibration": "evaluate", "calibration_errors": "evaluate",
    "reliability_diagram": "evaluate", "auroc": "evaluate", "spearman": "evaluate",
}

__all__ = ["FunctionReward", "Reward", "RewardResult", "call_reward", "check_result", "context_column",
           "reward_name", "unpack_prompts", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
