"""The `verifier` builder: ACT's constraint-satisfaction ranking.

ACT (Wang et al. 2024, *From Instructions to Constraints: Language Model Alignment with Automatic Constraint
Verification*, arXiv 2403.06326; spec objectives.md §9.2): sample k responses per prompt from the current LM,
score each by CSR(x, y) = (1/|C(x)|) Σ_c v_c(x, y) with automatic verifiers (here the IFEval checkers, reward
`csr`), and label y_i ≻ y_j iff CSR_i > CSR_j. Equal-CSR pairs are skipped (counted as `tied_pairs`); a prompt whose
samples all share one CSR gives no ranking signal and is dropped (`all_tied`); a prompt with no constraints has no
CSR and is dropped (`no_constraints`). The records feed a ranking loss (LiPO/PRO, §3) or pairwise DPO.
"""

from __future__ import annotations

from typing import Any

from alignkit.data.build.common import BuildItem, SamplingSettings
from alignkit.data.build.reward import RewardBuilder
from alignkit.decode.sampler import Sampler


class VerifierBuilder(RewardBuilder):
    """ACT: rank n samples per prompt by constraint satisfaction rate (reward `csr` by default)."""

    name = "verifier"

    def __init__(self, policy: Sampler, reward: Any = None, sampling: SamplingSettings | None = None, *,
                 fmt: str = "pairwise", pair_mode: str = "best-vs-worst", policy_name: str = "policy",
                 reward_spec: str | None = None) -> None:
        if reward is None:
            from alignkit.rewards.registry import load_reward

            reward, reward_spec = load_reward("csr"), reward_spec or "csr"
        super().__init__(policy, reward, sampling, fmt=fmt, pair_mode=pair_mode, min_margin=0.0,
                         policy_name=policy_name, reward_spec=reward_spec)

    def skip_reason(self, item: BuildItem) -> str | None:
        return None if item.constraints else "no_constraints"

    def item_metadata(self, item: BuildItem) -> dict[str, Any]:
        return {**super().item_metadata(item), "constraints": item.constraints}
