"""`RewardTrainConfig`: the engine's `TrainConfig` plus the reward-model objectives' settings (spec objectives.md §7).

The objective names live in `OBJECTIVES`; a new reward-model kind adds its name here, its options as fields, and
one step class in `steps.py` (see `make_step` there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alignkit.errors import ConfigError
from alignkit.train.config import TrainConfig

RMObjective = Literal["bt", "regression", "more", "pal", "principle", "critique"]


OBJECTIVES: tuple[str, ...] = ("bt", "regression", "more", "pal", "principle", "critique")


TASK_FIELDS = ("task", "source")


USER_FIELDS = ("user", "user_id")


PRINCIPLE_FIELDS = ("principle", "principles")


@dataclass
class RewardTrainConfig(TrainConfig):
    """`alignkit reward train`'s configuration: the engine's TrainConfig (optimiser, schedule, checkpoints, LoRA,
    truncation) plus the RM objective's settings. `reference*`, `beta` and `objective_args` are not used."""

    objective: RMObjective = "bt"  # type: ignore[assignment]
    lr: float = 1e-5
    output_dir: str = "runs/reward"
    tune: Literal["full", "lora", "head"] = "full"
    # bt / principle / more
    margin: Literal["column", "none", "small", "large"] = "column"
    rating_field: str = "rating"
    center_coef: float = 0.0
    # regression
    attributes: list[str] = field(default_factory=list)
    attribute_weights: list[float] = field(default_factory=list)
    # more
    task_field: str = ""  # "" → first of task, source
    more_alpha: float = 0.99
    more_normalize: Literal["l2", "none"] = "l2"
    # pal
    user_field: str = ""  # "" → first of user, user_id
    pal_k: int = 2
    pal_dim: int = 0  # 0 → the backbone's hidden size
    pal_temperature: float = 1.0
    # principle
    principles: list[str] = field(default_factory=list)
    principle_field: str = ""  # "" → first of principle, principles
    # critique (MM-RLHF critique RM, spec wave2_feedback_safety.md §4.3; the released script's weights)
    critique_bt_weight: float = 1.0  # w_f
    critique_weight: float = 1.0  # w_c, on the gold critiques' NLL
    critique_center_coef: float = 0.01  # c_ctr
    critique_tie_weight: float = 1.0  # ties: tie_weight·mean((r_c − r_r)²) (not in the released config)
    # final evaluation
    eval_bins: int = 10

    def validate(self, need_data: bool = True) -> None:
        if need_data:
            super().validate()
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"reward objective {self.objective!r} is unknown; choose one of {list(OBJECTIVES)}")
        if self.objective_args or self.beta is not None:
            raise ConfigError("objective_args/beta are not used by reward training; set the RM options directly "
                              "(margin, center_coef, attributes, more_alpha, pal_k, principles, ...)")
        if self.center_coef < 0:
            raise ConfigError(f"center_coef must be ≥ 0, got {self.center_coef}")
        if not 0.0 < self.more_alpha <= 1.0:
            raise ConfigError(f"more_alpha must be in (0, 1], got {self.more_alpha}")
        if self.pal_k < 1 or self.pal_dim < 0 or self.pal_temperature <= 0:
            raise ConfigError("pal_k must be ≥ 1, pal_dim ≥ 0 and pal_temperature > 0")
        if self.attribute_weights and self.attributes and len(self.attribute_weights) != len(self.attributes):
            raise ConfigError(f"{len(self.attribute_weights)} attribute_weights for {len(self.attributes)} "
                              "attributes")
        if self.eval_bins < 1:
            raise ConfigError(f"eval_bins must be ≥ 1, got {self.eval_bins}")

    @property
    def data_kind(self) -> str:
        return "scored" if self.objective == "regression" else "pairwise"
