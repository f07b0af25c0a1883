"""Analytic and empirical quantities for test-time alignment (spec A1).

`bon_kl(n) = log n − (n−1)/n`: the KL(π_BoN ‖ p) formula of Stiennon et al. 2020 (appendix), used by Gao et al. 2023
as the x-axis of over-optimisation plots. Beirami et al. 2024 show it is an *upper bound* (tight for continuous
rewards without ties; loose when p repeats outputs). `bon_kl_empirical` estimates the true KL of best-of-n over a
finite set of outputs with known base probabilities and rewards, exactly (ties broken by output order, as argmax).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from alignkit.errors import ConfigError


def bon_kl(n: int) -> float:
    """log n − (n−1)/n nats. N=4 → 0.6362944, N=1024 → 5.932."""
    if n < 1:
        raise ConfigError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def bon_distribution(probs: Sequence[float], rewards: Sequence[float], n: int) -> list[float]:
    """Exact best-of-n distribution over a finite output set: π(y) = F(y)^n − F⁻(y)^n, where outputs are ordered by
    reward (ties: later index counts as lower, so argmax picks the first) and F is the CDF in that order."""
    if len(probs) != len(rewards):
        raise ConfigError(f"{len(probs)} probabilities but {len(rewards)} rewards")
    total = sum(probs)
    if total <= 0:
        raise ConfigError("probabilities must sum to a positive number")
    order = sorted(range(len(probs)), key=lambda i: (rewards[i], -i))  # ascending "goodness"
    out = [0.0] * len(probs)
    cdf = 0.0
    for i in order:
        lo = cdf
        cdf += probs[i] / total
        out[i] = min(cdf, 1.0) ** n - lo ** n
    return out


def bon_kl_empirical(probs: Sequence[float], rewards: Sequence[float], n: int) -> float:
    """KL(π_BoN ‖ p) in nats for a finite output set (≤ bon_kl(n); equal in the no-ties continuous limit)."""
    total = sum(probs)
    pi = bon_distribution(probs, rewards, n)
    return sum(q * math.log(q / (p / total)) for q, p in zip(pi, probs, strict=True) if q > 0)


def bon_kl_from_samples(rewards: Sequence[float], n: int) -> float:
    """Plug-in estimate from i.i.d. sample rewards of one prompt: treats each sample as a distinct output with mass
    1/m; with distinct rewards it tends to the analytic bound as m grows. A sanity curve beside bon_kl."""
    m = len(rewards)
    if m == 0:
        raise ConfigError("need at least one sampled reward")
    return bon_kl_empirical([1.0 / m] * m, rewards, n)
