"""Reward-model training on the one offline engine (`alignkit.train.loop.train_loop`); spec objectives.md §7.

Objectives (`RewardTrainConfig.objective`):

* `bt` — Bradley–Terry (InstructGPT), L = −log σ(r_w − r_l − m) + c·(r_w + r_l)² (`rewards.losses.bt_loss`).
  m comes from the record's `margin` column (`margin=column`, the default) or from a Llama 2 rating in metadata
  (`margin=small|large`: {significantly better: 1, better: 2/3, slightly better: 1/3, negligibly better/unsure: 0}
  or {3, 2, 1, 0}); c = `center_coef` (Eisenstein et al. 2023 / TRL's `center_rewards_coefficient`, 0.01
  recommended).
* `regression` — HelpSteer2 multi-attribute head, masked MSE Σ m(ŷ − y)²/Σ m with missing labels = −100 (§7.2).
  Attributes default to HelpSteer2's five when the data uses them, else every attribute name seen in the data.
* `more` — MORE (Zeng et al. 2023, arXiv 2312.07401, §7.3): task ids from a metadata field (`task`, else
  `source`); every step the per-task BT gradients w.r.t. the **reward head only** (on detached embeddings) are
  momentum-averaged (α = 0.99 weights the new gradient), L2-normalised and turned into MGDA min-norm weights λ on
  the simplex; loss = T·Σ_k λ_k Σ_{pairs∈k} −log σ(Δr) / #pairs. Batches are resampled to hold one example per
  task in turn (MORE's `--resampling`), so `batch_size` must be ≥ the number of tasks.
* `pal` — PAL-B (Chen et al. 2024, arXiv 2406.08469, §7.4) on the backbone's last-token embeddings: user ids from
  metadata (`user`, else `user_id`), K prototype prompt heads, r_u(x, y) = s·cos(f(x, y), Σ_k w_uk g_k(x)), CE over
  the two rewards. The final directory also holds the PAL head; `PALReward` scores it and fits unseen users from a
  few pairs (`fit_user`, only the new user's K logits move).
* Pairwise objectives also accept ranked lists (`completions`/`scores`): every pair with different scores, ties
  excluded and counted (the listwise BT generalisation, MORE's `ranking_loss`: BT averaged over valid pairs).
* `principle` — principle-conditioned BT (SALMON, Sun et al. 2023): the principle text (metadata `principle`, else
  `principles` from the config) is put into the system message exactly as `RewardModel` does at scoring time.

Tuning (`tune`): `full` (all weights), `lora` (a LoRA adapter on the backbone, merged into the final model; the
head trains in full) or `head` (the backbone is frozen; only the head, or the PAL modules, train).

Every run writes `config.yaml`, `metrics.jsonl`, `checkpoints/step-N/` (resumable), `final/` (an RM directory that
`RewardModel.load` and `load_reward("rm:DIR")` read), `summary.json`, and — with eval data — `eval.json` (pairwise
accuracy, by task/user, ECE/ACE/MCE at 5/10/20 bins; per-attribute MSE for regression) and `reliability.png`.

Modules, by concern: `config` (RewardTrainConfig), `data` (records → tokens → batches, batch sources),
`module` (the trained RM/PAL module, `tune`), `steps` (one step class per objective), `pal_reward` (PALReward),
`evaluate` (eval.json), `run` (`train_reward_model`). `alignkit.rewards.train` re-exports this package.
"""

from __future__ import annotations

from alignkit.rewards.training.config import (
    OBJECTIVES,
    PRINCIPLE_FIELDS,
    TASK_FIELDS,
    USER_FIELDS,
    RewardTrainConfig,
    RMObjective,
)
from alignkit.rewards.training.data import (
    RMBatch,
    RMData,
    RMSource,
    TaskBalancedSource,
    as_rm_records,
    collate_rm,
    group_names_of,
    pad_right,
    resolve_attributes,
    tokenize_rm_records,
)
from alignkit.rewards.training.evaluate import evaluate_rm, predict
from alignkit.rewards.training.module import (
    RMTrainModule,
    backbone_attr,
    build_reward_model,
    merge_lora_backbone,
    pal_user_weights,
    pooled_hidden,
    prepare_trainable,
)
from alignkit.rewards.training.pal_reward import PAL_META, PAL_WEIGHTS, PALReward
from alignkit.rewards.training.run import RewardTrainResult, train_reward_model
from alignkit.rewards.training.steps import BTStep, DeviceStep, MOREStep, PALStep, RegressionStep, StepResult

__all__ = [
    "BTStep",
    "DeviceStep",
    "MOREStep",
    "OBJECTIVES",
    "PALReward",
    "PALStep",
    "PAL_META",
    "PAL_WEIGHTS",
    "PRINCIPLE_FIELDS",
    "RMBatch",
    "RMData",
    "RMObjective",
    "RMSource",
    "RMTrainModule",
    "RegressionStep",
    "RewardTrainConfig",
    "RewardTrainResult",
    "StepResult",
    "TASK_FIELDS",
    "TaskBalancedSource",
    "USER_FIELDS",
    "as_rm_records",
    "backbone_attr",
    "build_reward_model",
    "collate_rm",
    "evaluate_rm",
    "group_names_of",
    "merge_lora_backbone",
    "pad_right",
    "pal_user_weights",
    "pooled_hidden",
    "predict",
    "prepare_trainable",
    "resolve_attributes",
    "tokenize_rm_records",
    "train_reward_model",
]
