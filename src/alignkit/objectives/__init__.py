"""Pure loss functions of log-prob tensors, by data kind. Importing this package registers them all.

See `docs/objectives.md` for the table of objectives and `alignkit objectives` for the same from the CLI.
"""

from __future__ import annotations

from typing import Any

from alignkit.objectives import (  # noqa: F401  (register)
    dense,
    distill,
    judged,
    listwise,
    pairwise,
    sft,
    steerlm,
    unpaired,
    w2s,  # noqa: F401  (register: w2s_confidence)
)
from alignkit.objectives._common import ObjectiveState
from alignkit.objectives.base import OBJECTIVES, LogProbs, ObjectiveSpec, get_objective, register_objective

# hyperparameters that are plumbing, not tuning knobs: hidden from listings
_PLUMBING = {"state", "generator"}


def is_stateful(spec: ObjectiveSpec) -> bool:
    """True when the objective keeps statistics across steps: the engine must pass one persistent `state` dict
    on every call and save it with checkpoints (see `alignkit.objectives._common`)."""
    return "state" in spec.defaults


def describe_objectives(data_kind: str | None = None) -> list[dict[str, Any]]:
    """One row per registered objective (sorted by data kind, then name): name, data_kind, needs_reference,
    needs_teacher, token_level, needs_extras, stateful, defaults (tuning hyperparameters only), paper."""
    rows = []
    for spec in sorted(OBJECTIVES.values(), key=lambda s: (s.data_kind, s.name)):
        # Names starting with "_" are private (e.g. registered by tests) and are not listed.
        if spec.name.startswith("_") or (data_kind is not None and spec.data_kind != data_kind):
            continue
        rows.append({
            "name": spec.name, "data_kind": spec.data_kind, "needs_reference": spec.needs_reference,
            "needs_teacher": spec.needs_teacher, "token_level": spec.token_level,
            "needs_extras": list(spec.needs_extras), "stateful": is_stateful(spec),
            "defaults": {k: v for k, v in spec.defaults.items() if k not in _PLUMBING}, "paper": spec.paper,
        })
    return rows


__all__ = ["OBJECTIVES", "LogProbs", "ObjectiveSpec", "ObjectiveState", "describe_objectives", "get_objective",
           "is_stateful", "register_objective"]
