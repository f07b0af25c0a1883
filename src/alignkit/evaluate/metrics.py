"""All evaluation metrics in one namespace (each lives in a small module named after what it measures).

| metric | module | spec |
|---|---|---|
| IFEval / IFBench prompt- and instruction-level accuracy | `ifeval` | testtime_eval.md B8 |
| reward mean / histogram, win rate (ties = 1/2) | `reward` | — |
| Monte-Carlo KL, reward–KL frontier, best-of-N KL | `kl` | objectives.md §10 |
| honesty: idk detection, prudence, over-conservativeness | `honesty` | testtime_eval.md B2 |
| steerability: steering error, miscalibration, orthogonality | `steerability` | testtime_eval.md B3 |
| Turing RSA | `rsa` | testtime_eval.md B4 |
| token-distribution shift | `tds` | testtime_eval.md A5.2 |

Every headline number is an `Estimate(value, low, high, n)` with a seeded percentile-bootstrap CI (`stats`).
"""

from alignkit.evaluate.honesty import (
    CANONICAL_IDK,
    HONESTY_PROMPT,
    IDK_PHRASES,
    HonestyResult,
    IdkDetector,
    Judgement,
    has_match,
    honesty_scores,
    is_idk,
    judge_answer,
    normalize_answer,
)
from alignkit.evaluate.ifeval import IFEvalResult, check_instructions, ifeval_accuracy, loose_variants
from alignkit.evaluate.kl import (
    FrontierPoint,
    bon_distribution,
    bon_kl_bound,
    bon_kl_exact,
    bon_n_for_kl,
    exponential_tilt,
    kl_estimate,
    reward_kl_frontier,
)
from alignkit.evaluate.reward import RewardSummary, reward_summary, win_outcomes, win_rate
from alignkit.evaluate.rsa import (
    RSAScore,
    embedding_dsm,
    group_matrix,
    mantel_test,
    noise_ceiling,
    pairwise_rsa,
    rsa_estimate,
    rsa_score,
    similarity_to_dissimilarity,
    symmetrize,
    upper_triangle,
)
from alignkit.evaluate.stats import Estimate, bootstrap, mean_ci, proportion_ci, ratio_ci
from alignkit.evaluate.steerability import (
    DIRECT_PROMPT_CUT_POINTS,
    SteerabilityResult,
    steerability,
    steering_metrics,
)
from alignkit.evaluate.tds import (
    BASE_TEMPLATE,
    TDSResult,
    TokenShiftData,
    position_curves,
    tds_category,
    tds_fractions,
    token_ranks_from_models,
    top_shifted_tokens,
)

__all__ = [
    "BASE_TEMPLATE", "CANONICAL_IDK", "DIRECT_PROMPT_CUT_POINTS", "HONESTY_PROMPT", "IDK_PHRASES", "Estimate",
    "FrontierPoint", "HonestyResult", "IFEvalResult", "IdkDetector", "Judgement", "RSAScore", "RewardSummary",
    "SteerabilityResult", "TDSResult", "TokenShiftData", "bon_distribution", "bon_kl_bound", "bon_kl_exact",
    "bon_n_for_kl", "bootstrap", "check_instructions", "embedding_dsm", "exponential_tilt", "group_matrix",
    "has_match", "honesty_scores", "ifeval_accuracy", "is_idk", "judge_answer", "kl_estimate", "loose_variants",
    "mantel_test", "mean_ci", "noise_ceiling", "normalize_answer", "pairwise_rsa", "position_curves",
    "proportion_ci", "ratio_ci", "reward_kl_frontier", "reward_summary", "rsa_estimate", "rsa_score",
    "similarity_to_dissimilarity", "steerability", "steering_metrics", "symmetrize", "tds_category",
    "tds_fractions", "token_ranks_from_models", "top_shifted_tokens", "upper_triangle", "win_outcomes", "win_rate",
]
