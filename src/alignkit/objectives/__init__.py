"""Pure loss functions of log-prob tensors, by data kind. Importing this package registers them all."""

from alignkit.objectives.base import OBJECTIVES, LogProbs, ObjectiveSpec, get_objective, register_objective

__all__ = ["OBJECTIVES", "LogProbs", "ObjectiveSpec", "get_objective", "register_objective"]
