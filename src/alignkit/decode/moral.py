"""The moral direction in a policy's own hidden space (spec wave2_selfalign_merge.md §6, "Uses in alignkit"):
frame-templated positive vs negative verbs of the shipped fit set (`rewards.moral.moral_actions`), last-token
states per layer, through `decode.steer.extract_steering_vector`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.decode.steer import SteeringVector, extract_steering_vector
from alignkit.rewards.moral import moral_actions


def moral_steering_vector(model: Any, tokenizer: Any, layers: Sequence[int], method: str = "mean_diff"
                          ) -> SteeringVector:
    """The moral direction in the policy's own space: frame-templated positive vs negative verbs, last-token
    states per layer (`decode.steer.extract_steering_vector`, mean difference by default: more stable on 24
    pairs than PCA), unit norm, sign towards the positive verbs. Save with `.save(path)`; apply with `steer`."""
    acts = moral_actions()
    pairs = [(f.format(p), f.format(n)) for p, n in zip(acts["positive"], acts["negative"], strict=True)
             for f in acts["frames"]]
    vec = extract_steering_vector(model, tokenizer, pairs, layers, method=method)
    vec.metadata["source"] = "moral_direction"
    return vec
