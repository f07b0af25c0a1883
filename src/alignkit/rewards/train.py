"""Compatibility module: reward-model training now lives in the `alignkit.rewards.training` package (split by
concern in issue #22: config, data, module, steps, pal_reward, evaluate, run). Every public name documented under
`alignkit.rewards.train` (README, docs/rewards.md) is re-exported here so existing imports keep working.
"""

from __future__ import annotations

from alignkit.rewards.training import *  # noqa: F403
from alignkit.rewards.training import __all__  # noqa: F401
