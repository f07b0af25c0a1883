"""`RewardTrainConfig`: the engine's `TrainConfig` plus the reward-model objectives' settings (spec objectives.md §7).

The objective names live in `OBJECTIVES`; a new reward-model kind adds its name here, its options as fields, and
one step class in `steps.py` (see `make_step` there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alignkit.errors import ConfigError
from alignkit.train.config import TrainConfig

RMObjective = Literal["bt", "regression", "more", "pal", "principle", "critique", "remodetect"]


OBJECTIVES: tuple[str, ...] = ("bt", "regression", "more", "pal", "principle", "critique", "remodetect")


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
    # remodetect (ReMoDetect continual preference tuning, testtime_eval.md §B6, wave2_selfalign_merge.md §9; the
    # released train.sh's values): triplet λ, β, and the replay term against the frozen original RM
    remodetect_lambdas: list[float] = field(default_factory=lambda: [0.35, 1.0, 0.35])
    remodetect_beta: float = 0.01
    replay_data: str = ""  # texts for the replay term ("" = no replay term); rows with text or chosen/rejected
    replay_l2_ratio: float = 0.01
    replay_batch_size: int = 1  # one replay batch per step, of this many texts (the code: 1)
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
        if len(self.remodetect_lambdas) != 3 or self.remodetect_beta < 0 or self.replay_l2_ratio < 0:
            raise ConfigError("remodetect needs 3 remodetect_lambdas (llm≻mixed, llm≻human, mixed≻human), "
                              "remodetect_beta ≥ 0 and replay_l2_ratio ≥ 0")
        if self.replay_batch_size < 1:
            raise ConfigError(f"replay_batch_size must be ≥ 1, got {self.replay_batch_size}")
        if self.replay_data and self.objective != "remodetect":
            raise ConfigError("replay_data is used by objective remodetect only")
        if self.eval_bins < 1:
            raise ConfigError(f"eval_bins must be ≥ 1, got {self.eval_bins}")

    @property
    def data_kind(self) -> str:
        return {"regression": "scored", "remodetect": "listwise"}.get(self.objective, "pairwise")
