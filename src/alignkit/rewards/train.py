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
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from alignkit.config import save_config
from alignkit.data.records import PairwiseExample, Prompt, ScoredExample
from alignkit.data.tokenize import TooLong, TruncationStats, encode_example, encode_prompt
from alignkit.errors import ConfigError, DataError, RewardError, TrainingError
from alignkit.rewards.base import RewardResult, unpack_prompts
from alignkit.rewards.losses import LLAMA2_MARGINS, bt_loss, more_loss, more_task_weights, regression_loss
from alignkit.rewards.model import (
    HELPSTEER2_ATTRIBUTES,
    HELPSTEER2_WEIGHTS,
    META_FILE,
    RewardModel,
    ScalarHeadModel,
    _backbone_and_head,
    with_principles,
)
from alignkit.rewards.pal import PALB, fit_new_user, pal_loss
from alignkit.train.config import TrainConfig

RMObjective = Literal["bt", "regression", "more", "pal", "principle"]
OBJECTIVES: tuple[str, ...] = ("bt", "regression", "more", "pal", "principle")
PAL_META = "alignkit_pal.json"
PAL_WEIGHTS = "pal.safetensors"
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


# ---------------------------------------------------------------------------------------------------------------
# Data: records → token ids → RM batches


@dataclass
class RMData:
    """Tokenised RM training data. Pairwise objectives fill `chosen`/`rejected` (and `prompts` for PAL), the
    regression objective `seqs`/`labels`. `groups` holds task ids (MORE) or user ids (PAL), −1 = unseen."""

    objective: str
    chosen: list[list[int]] = field(default_factory=list)
    rejected: list[list[int]] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)
    seqs: list[list[int]] = field(default_factory=list)
    labels: list[list[float]] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)
    prompt_keys: list[str] = field(default_factory=list)
    stats: TruncationStats = field(default_factory=TruncationStats)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seqs) if self.objective == "regression" else len(self.chosen)

    def skip_summary(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"


@dataclass
class RMBatch:
    """One forward's worth of sequences. Pairwise: rows [0, B) chosen, [B, 2B) rejected, [2B, 3B) prompts (PAL)."""

    input_ids: Tensor
    attention_mask: Tensor
    n_pairs: int = 0
    labels: Tensor | None = None
    margins: Tensor | None = None
    groups: Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: Any) -> RMBatch:
        return RMBatch(*(t.to(device) if isinstance(t, Tensor) else t for t in
                         (self.input_ids, self.attention_mask, self.n_pairs, self.labels, self.margins,
                          self.groups)))


def pad_right(seqs: Sequence[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad to the batch maximum (pooling reads the last attended token, so any padding side works)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, :len(s)] = 1
    return ids, att


def collate_rm(data: RMData, indices: Sequence[int], pad_id: int) -> RMBatch:
    idx = list(indices)
    if not idx:
        raise TrainingError("collate_rm: empty batch")
    if data.objective == "regression":
        ids, att = pad_right([data.seqs[i] for i in idx], pad_id)
        return RMBatch(ids, att, labels=torch.tensor([data.labels[i] for i in idx], dtype=torch.float32))
    rows = [data.chosen[i] for i in idx] + [data.rejected[i] for i in idx]
    if data.objective == "pal":
        rows += [data.prompts[i] for i in idx]
    ids, att = pad_right(rows, pad_id)
    groups = torch.tensor([data.groups[i] for i in idx], dtype=torch.long) if data.groups else None
    margins = torch.tensor([data.margins[i] for i in idx], dtype=torch.float32) if data.margins else None
    return RMBatch(ids, att, n_pairs=len(idx), margins=margins, groups=groups)


def _meta_value(record: Any, names: Sequence[str]) -> Any:
    for name in names:
        if record.metadata.get(name) is not None:
            return record.metadata[name]
    return None


def _fields(configured: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    return (configured,) if configured else defaults


def _margin_of(record: PairwiseExample, cfg: RewardTrainConfig, where: str) -> float:
    if cfg.margin == "none":
        return 0.0
    if cfg.margin == "column":
        return float(record.margin) if record.margin is not None else 0.0
    rating = record.metadata.get(cfg.rating_field)
    if rating is None:
        raise DataError(f"margin={cfg.margin} needs a Llama 2 rating in column {cfg.rating_field!r}", source=where)
    scheme = LLAMA2_MARGINS[cfg.margin]
    key = str(rating).strip().lower()
    if key not in scheme:
        raise DataError(f"rating {rating!r} is not one of {sorted(scheme)}", source=where, field=cfg.rating_field)
    return scheme[key]


def resolve_attributes(records: Sequence[ScoredExample], cfg: RewardTrainConfig) -> list[str]:
    """The regression head's attribute order: the config's, else HelpSteer2's when the data's names are among
    them, else every name seen in the data (sorted)."""
    if cfg.attributes:
        return list(cfg.attributes)
    seen = sorted({k for r in records for k in r.attributes})
    if not seen:
        raise DataError("scored records carry no attributes; a regression RM needs at least one")
    if set(seen) <= set(HELPSTEER2_ATTRIBUTES):
        return list(HELPSTEER2_ATTRIBUTES)
    return seen


def group_names_of(records: Sequence[Any], names: Sequence[str], what: str) -> list[str]:
    values = [_meta_value(r, names) for r in records]
    missing = sum(v is None for v in values)
    if missing:
        raise DataError(f"{missing} of {len(values)} records have no {what} id; put it in a column named "
                        f"{' or '.join(names)} (or set {what}_field)")
    return sorted({str(v) for v in values})


def tokenize_rm_records(records: Sequence[Any], cfg: RewardTrainConfig, tokenizer: Any, *,
                        group_names: Sequence[str] | None = None, attributes: Sequence[str] | None = None,
                        desc: str = "tokenising") -> RMData:
    """Encode records exactly as `RewardModel.encode` reads them (chat template, EOS, principles in the system
    message), applying the truncation policy and counting every record left out and why."""
    objective = cfg.objective
    data = RMData(objective)
    trunc = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length, policy=cfg.truncation,
                 template=cfg.template, stats=data.stats)
    group_fields: tuple[str, ...] = ()
    if objective in ("more", "pal"):
        group_fields = _fields(cfg.task_field if objective == "more" else cfg.user_field,
                               TASK_FIELDS if objective == "more" else USER_FIELDS)
        data.group_names = list(group_names) if group_names is not None else group_names_of(
            records, group_fields, "task" if objective == "more" else "user")
    index = {n: i for i, n in enumerate(data.group_names)}
    unseen = 0

    def skip(why: str) -> None:
        data.skipped[why] = data.skipped.get(why, 0) + 1

    for n, record in enumerate(tqdm(records, desc=desc, disable=len(records) < 256, leave=False)):
        where = f"record {n}"
        prompt: Prompt = record.prompt
        if objective == "principle":
            principle = _meta_value(record, _fields(cfg.principle_field, PRINCIPLE_FIELDS)) or cfg.principles
            if not principle:
                raise DataError("principle objective: no principle in the record's metadata (`principle`) and "
                                "none in the config (`principles`)", source=where)
            prompt = with_principles(prompt, principle)
        try:
            if objective == "regression":
                if not isinstance(record, ScoredExample):
                    raise DataError(f"regression needs scored records, got {type(record).__name__}", source=where)
                attrs = list(attributes or [])
                labels = [float(record.attributes[a]) if record.attributes.get(a) is not None else -100.0
                          for a in attrs]
                if all(v == -100.0 for v in labels):
                    skip("with none of the head's attributes")
                    continue
                extra = set(record.attributes) - set(attrs)
                if extra:
                    data.skipped["attribute values not in the head (ignored, record kept)"] = data.skipped.get(
                        "attribute values not in the head (ignored, record kept)", 0) + len(extra)
                enc = encode_example(tokenizer, prompt, record.completion, **trunc)  # type: ignore[arg-type]
                data.seqs.append(enc.input_ids)
                data.labels.append(labels)
                data.prompt_keys.append(json.dumps(record.prompt, sort_keys=True))
                continue
            if not isinstance(record, PairwiseExample):
                raise DataError(f"objective {objective} needs pairwise records, got {type(record).__name__}",
                                source=where)
            if record.chosen == record.rejected:
                skip("with identical chosen and rejected (no preference)")
                continue
            chosen = encode_example(tokenizer, prompt, record.chosen, **trunc)  # type: ignore[arg-type]
            rejected = encode_example(tokenizer, prompt, record.rejected, **trunc)  # type: ignore[arg-type]
        except TooLong:
            skip("too long (truncation=drop)")
            continue
        data.chosen.append(chosen.input_ids)
        data.rejected.append(rejected.input_ids)
        data.margins.append(_margin_of(record, cfg, where))
        if objective == "pal":
            data.prompts.append(encode_prompt(tokenizer, prompt, cfg.template)[-(cfg.max_prompt_length or 10**9):])
        if group_fields:
            gid = index.get(str(_meta_value(record, group_fields)), -1)
            unseen += gid < 0
            data.groups.append(gid)
    if unseen:
        data.skipped[f"with a {'task' if objective == 'more' else 'user'} unseen in training (kept, id −1)"] = unseen
    if not any(data.margins):
        data.margins = []
    return data


class RMSource:
    """`BatchSource` for `train_loop`: indices → RMBatch."""

    def __init__(self, data: RMData, pad_id: int) -> None:
        self.data, self.pad_id = data, pad_id

    def __len__(self) -> int:
        return len(self.data)

    def get(self, indices: list[int]) -> RMBatch:
        return collate_rm(self.data, indices, self.pad_id)


class TaskBalancedSource(RMSource):
    """MORE's resampling: position p of a batch draws from task p mod T, so every batch holds every task. The
    example is a pure function of the loop's index (so resumed runs see the same batches)."""

    def __init__(self, data: RMData, pad_id: int, batch_size: int) -> None:
        super().__init__(data, pad_id)
        by_task: dict[int, list[int]] = defaultdict(list)
        for i, g in enumerate(data.groups):
            by_task[g].append(i)
        self.tasks = [by_task[t] for t in range(len(data.group_names))]
        empty = [data.group_names[t] for t, m in enumerate(self.tasks) if not m]
        if empty:
            raise DataError(f"MORE: tasks {empty} have no training pairs left after tokenisation")
        if batch_size < len(self.tasks):
            raise ConfigError(f"MORE needs one example per task in each batch: batch_size {batch_size} < "
                              f"{len(self.tasks)} tasks")

    def get(self, indices: list[int]) -> RMBatch:
        t = len(self.tasks)
        picked = [self.tasks[p % t][i % len(self.tasks[p % t])] for p, i in enumerate(indices)]
        return collate_rm(self.data, picked, self.pad_id)


# ---------------------------------------------------------------------------------------------------------------
# The trained module and the per-objective step functions


def backbone_attr(model: nn.Module) -> str:
    return "backbone" if isinstance(model, ScalarHeadModel) else getattr(model, "base_model_prefix", "model")


def _parts(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    parts = _backbone_and_head(model)
    if parts is None:
        raise ConfigError(f"{type(model).__name__}: reward training needs a decoder backbone with a linear `score` "
                          "head (build it with RewardModel.from_backbone)")
    return parts  # type: ignore[return-value]


def pooled_hidden(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Final hidden state at each row's last attended token (the EOS that `RewardModel` scores)."""
    backbone, _ = _parts(model)
    last = (torch.arange(input_ids.shape[1], device=input_ids.device) * attention_mask).argmax(dim=-1)
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    return hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]


def pal_user_weights(pal: PALB, user_ids: Tensor) -> Tensor:
    """softmax(W_u / T); unseen users (id −1) get uniform weights (zeros logits, spec §7.4's recommendation)."""
    w = pal.users(user_ids.clamp(min=0))
    k = w.shape[-1]
    return torch.where((user_ids < 0).unsqueeze(-1), torch.full_like(w, 1.0 / k), w)


class RMTrainModule(nn.Module):
    """What `train_loop` trains: the RM (backbone + head) and, for PAL, the PAL-B module. `forward` returns the
    pooled hidden states, the head's scores and (PAL) the `[B, 2]` user-conditioned reward logits."""

    def __init__(self, rm_model: nn.Module, pal: PALB | None = None) -> None:
        super().__init__()
        self.rm = rm_model
        self.pal = pal

    def forward(self, input_ids: Tensor, attention_mask: Tensor, n_pairs: int = 0,
                groups: Tensor | None = None) -> dict[str, Tensor]:
        hidden = pooled_hidden(self.rm, input_ids, attention_mask)
        if self.pal is not None:
            b = n_pairs
            h_c, h_r, h_p = hidden[:b], hidden[b:2 * b], hidden[2 * b:3 * b]
            assert groups is not None
            w = pal_user_weights(self.pal, groups)
            points = self.pal.prompt_points(h_p)
            r_c = _pal_reward(self.pal, w, points, h_c)
            r_r = _pal_reward(self.pal, w, points, h_r)
            return {"hidden": hidden, "pal_logits": torch.stack([r_c, r_r], dim=-1)}
        _, head = _parts(self.rm)
        return {"hidden": hidden, "scores": head(hidden).float()}


def _pal_reward(pal: PALB, w: Tensor, points: Tensor, items: Tensor) -> Tensor:
    ideal = torch.einsum("bk,bkd->bd", w, points)
    return pal.scale * F.cosine_similarity(pal.item_projector(items), ideal, dim=-1)


StepResult = tuple[Tensor, dict[str, float], int]


def _pair_metrics(r_c: Tensor, r_r: Tensor) -> dict[str, float]:
    d = (r_c - r_r).detach().float()
    return {"accuracy": float((d > 0).float().mean()), "margin": float(d.mean()),
            "reward_mean": float(torch.cat([r_c, r_r]).detach().float().mean())}


class BTStep:
    """BT with margin and centering (spec §7.1); also the principle objective's step."""

    def __init__(self, center_coef: float = 0.0) -> None:
        self.center_coef = center_coef

    def __call__(self, model: nn.Module, batch: RMBatch, split: str = "train") -> StepResult:
        b = batch.n_pairs
        out = model(batch.input_ids, batch.attention_mask, b)
        r = out["scores"][:, 0]
        r_c, r_r = r[:b], r[b:2 * b]
        loss = bt_loss(r_c, r_r, batch.margins, self.center_coef)
        return loss, _pair_metrics(r_c, r_r), batch.n_tokens


class RegressionStep:
    """Masked MSE over the attributes (spec §7.2)."""

    def __init__(self, attributes: Sequence[str]) -> None:
        self.attributes = list(attributes)

    def __call__(self, model: nn.Module, batch: RMBatch, split: str = "train") -> StepResult:
        out = model(batch.input_ids, batch.attention_mask)
        assert batch.labels is not None
        labels = batch.labels.to(out["scores"].device)
        loss = regression_loss(out["scores"], labels)
        mask = labels != -100.0
        err = (out["scores"].detach() - labels).abs() * mask
        mae = float(err.sum() / mask.sum().clamp(min=1))
        return loss, {"mse": float(loss.detach()), "mae": mae}, batch.n_tokens


class MOREStep:
    """MORE (spec §7.3): MGDA λ from per-task reward-head gradients; `state["more_g"]` is the momentum (checkpointed
    by the loop). Eval batches use uniform λ (the plain mean BT loss) and leave the state alone."""

    def __init__(self, task_names: Sequence[str], alpha: float, normalize: str, state: dict[str, Any]) -> None:
        self.names, self.alpha, self.normalize, self.state = list(task_names), alpha, normalize, state

    def __call__(self, model: nn.Module, batch: RMBatch, split: str = "train") -> StepResult:
        b, t = batch.n_pairs, len(self.names)
        out = model(batch.input_ids, batch.attention_mask, b)
        r = out["scores"][:, 0]
        r_c, r_r = r[:b], r[b:2 * b]
        assert batch.groups is not None
        tasks = batch.groups.to(r.device)
        metrics = _pair_metrics(r_c, r_r)
        if split != "train" or bool((tasks < 0).any()):
            return bt_loss(r_c, r_r), metrics, batch.n_tokens
        head = _parts(_unwrap(model).rm)[1]
        w = head.weight.detach().clone().requires_grad_(True)
        h = out["hidden"].detach().float()
        d = F.linear(h[:b] - h[b:2 * b], w.float())[:, 0]  # bias cancels in the difference
        grads = []
        for k in range(t):
            sel = tasks == k
            if not bool(sel.any()):
                grads.append(torch.zeros_like(w).flatten())
                continue
            (g,) = torch.autograd.grad(-F.logsigmoid(d[sel]).mean(), w, retain_graph=True)
            grads.append(g.flatten())
        prev = self.state.get("more_g")
        prev_t = torch.tensor(prev, dtype=torch.float32) if prev is not None else None
        lam, g_new = more_task_weights(torch.stack(grads).cpu(), prev_t, self.alpha, self.normalize)
        self.state["more_g"] = g_new.tolist()
        loss = more_loss(r_c, r_r, tasks, lam)
        metrics.update({f"lambda/{n}": float(v) for n, v in zip(self.names, lam.tolist(), strict=True)})
        return loss, metrics, batch.n_tokens


class PALStep:
    """PAL-B cross-entropy over [r_u(x, y_w), r_u(x, y_l)] with the chosen index as the target (spec §7.4)."""

    def __call__(self, model: nn.Module, batch: RMBatch, split: str = "train") -> StepResult:
        out = model(batch.input_ids, batch.attention_mask, batch.n_pairs, batch.groups)
        logits = out["pal_logits"]
        loss = pal_loss(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
        return loss, _pair_metrics(logits[:, 0], logits[:, 1]), batch.n_tokens


def _unwrap(model: nn.Module) -> Any:
    return getattr(model, "module", model)


class DeviceStep:
    """Moves each batch to the device before the objective's step."""

    def __init__(self, step: Any, device: Any) -> None:
        self.step, self.device = step, device

    def __call__(self, model: nn.Module, batch: RMBatch, split: str = "train") -> StepResult:
        return self.step(model, batch.to(self.device), split)


# ---------------------------------------------------------------------------------------------------------------
# Building the model


def _lora_backbone(rm_model: nn.Module, cfg: RewardTrainConfig) -> None:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    lora = cfg.lora if cfg.lora.enabled else replace(cfg.lora, r=8)
    name = backbone_attr(rm_model)
    backbone = getattr(rm_model, name)
    modules = {n.split(".")[-1] for n, _ in backbone.named_modules()}
    missing = [t for t in lora.target_modules if t not in modules]
    if missing:
        raise ConfigError(f"LoRA target_modules {missing} are not in the backbone; some names: {sorted(modules)[:20]}")
    peft_cfg = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                              target_modules=list(lora.target_modules))
    setattr(rm_model, name, get_peft_model(backbone, peft_cfg))


def merge_lora_backbone(rm_model: nn.Module) -> None:
    """Fold a LoRA backbone back into plain weights (so the RM directory is a normal HF model)."""
    name = backbone_attr(rm_model)
    backbone = getattr(rm_model, name)
    if hasattr(backbone, "merge_and_unload"):
        setattr(rm_model, name, backbone.merge_and_unload())


def build_reward_model(cfg: RewardTrainConfig, num_labels: int = 1) -> RewardModel:
    """A fresh RM on `cfg.model` (an alignkit model spec), or an existing RM directory to continue training."""
    path = Path(cfg.model.removeprefix("rm:"))
    if path.is_dir() and (path / META_FILE).exists():
        rm = RewardModel.load(path, max_length=cfg.max_length or 1024, template=cfg.template)
        if len(rm.attributes) != num_labels:
            raise ConfigError(f"{path} has a {len(rm.attributes)}-output head; objective {cfg.objective} needs "
                              f"{num_labels}")
        return rm
    return RewardModel.from_backbone(cfg.model, num_labels=num_labels, seed=cfg.seed,
                                     max_length=cfg.max_length or 1024, template=cfg.template)


def prepare_trainable(rm: RewardModel, cfg: RewardTrainConfig, pal: PALB | None) -> RMTrainModule:
    """Apply `tune`: full fine-tuning, LoRA on the backbone (head trains in full) or head-only."""
    model = rm.model
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    backbone, head = _parts(model)
    if cfg.tune == "head":
        for p in backbone.parameters():
            p.requires_grad_(False)
    elif cfg.tune == "lora":
        _lora_backbone(model, cfg)  # peft freezes the backbone's base weights
    if pal is not None:
        # PAL scores through its own modules; the scalar head is not trained.
        for p in head.parameters():
            p.requires_grad_(False)
    return RMTrainModule(model, pal)


# ---------------------------------------------------------------------------------------------------------------
# PAL as a Reward


class PALReward:
    """A trained PAL-B reward model: backbone embeddings + PAL-B head. `reward(prompts, completions, users=[...])`
    (or `user="name"`, or `self.default_user`) scores each completion for that user; unknown users or none get
    uniform prototype weights. `fit_user(name, prompts, chosen, rejected)` adds an unseen user from a few pairs."""

    def __init__(self, rm: RewardModel, pal: PALB, users: Sequence[str], *, name: str = "pal",
                 default_user: str | None = None) -> None:
        self.rm, self.pal, self.users = rm, pal, list(users)
        self.name, self.default_user = name, default_user

    def user_id(self, user: str | None) -> int:
        if user is None:
            return -1
        return self.users.index(str(user)) if str(user) in self.users else -1

    @torch.no_grad()
    def embed(self, rows: Sequence[list[int]]) -> Tensor:
        device = next(self.rm.model.parameters()).device
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        hidden = self.rm.model.config.get_text_config().hidden_size
        out = torch.zeros(len(rows), hidden)
        was = self.rm.model.training
        self.rm.model.eval()
        try:
            for s in range(0, len(order), self.rm.batch_size):
                idx = order[s:s + self.rm.batch_size]
                ids, att = pad_right([rows[i] for i in idx], self.rm.tokenizer.pad_token_id)
                out[idx] = pooled_hidden(self.rm.model, ids.to(device), att.to(device)).float().cpu()
        finally:
            self.rm.model.train(was)
        return out

    def _prompt_rows(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        return [encode_prompt(self.rm.tokenizer, with_principles(p, self.rm.principles), self.rm.template)
                for p in prompts]

    @torch.no_grad()
    def rewards(self, prompts: Sequence[Prompt], completions: Sequence[str], users: Sequence[str | None]) -> Tensor:
        items = self.embed([self.rm.encode(p, c) for p, c in zip(prompts, completions, strict=True)])
        points = self.pal.prompt_points(self.embed(self._prompt_rows(prompts)))
        ids = torch.tensor([self.user_id(u) for u in users], dtype=torch.long)
        return _pal_reward(self.pal, pal_user_weights(self.pal, ids), points, items)

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        prompts, _ = unpack_prompts(prompts, context)
        if not completions:
            return RewardResult([], [])
        users = context.get("users")
        if users is None:
            users = [context.get("user", self.default_user)] * len(completions)
        if len(users) != len(completions):
            raise RewardError(f"reward '{self.name}': {len(users)} users for {len(completions)} completions")
        return RewardResult(self.rewards(prompts, completions, users).tolist())

    def fit_user(self, user: str, prompts: Sequence[Prompt], chosen: Sequence[str], rejected: Sequence[str],
                 steps: int = 100, lr: float = 0.1) -> int:
        """Few-shot fit of an unseen user (spec §7.4): only the new user's K logits move, from uniform."""
        if str(user) in self.users:
            raise RewardError(f"user {user!r} is already known to reward '{self.name}'")
        if not prompts or not (len(prompts) == len(chosen) == len(rejected)):
            raise RewardError("fit_user needs equal, non-empty lists of prompts, chosen and rejected")
        p_emb = self.embed(self._prompt_rows(prompts))
        a = self.embed([self.rm.encode(p, c) for p, c in zip(prompts, chosen, strict=True)])
        b = self.embed([self.rm.encode(p, c) for p, c in zip(prompts, rejected, strict=True)])
        uid = fit_new_user(self.pal, (p_emb, a, b, torch.zeros(len(prompts), dtype=torch.long)), steps=steps, lr=lr)
        self.users.append(str(user))
        return uid

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = self.rm.save(path)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.pal.state_dict().items()},
                  str(path / PAL_WEIGHTS))
        (path / PAL_META).write_text(json.dumps({
            "users": self.users, "k": len(self.pal.prompt_heads), "in_dim": self.pal.item_projector.in_features,
            "dim": self.pal.item_projector.out_features, "temperature": self.pal.users.temperature,
            "max_scale": self.pal.max_scale}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, name: str | None = None, default_user: str | None = None,
             **kwargs: Any) -> PALReward:
        from safetensors.torch import load_file

        path = Path(path)
        meta = json.loads((path / PAL_META).read_text())
        rm = RewardModel.load(path, **kwargs)
        pal = PALB(len(meta["users"]), meta["k"], meta["in_dim"], meta["dim"], meta["temperature"],
                   meta["max_scale"])
        pal.load_state_dict(load_file(str(path / PAL_WEIGHTS)))
        pal.eval()
        return cls(rm, pal, meta["users"], name=name or f"pal:{path}", default_user=default_user)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def predict(module: RMTrainModule, data: RMData, pad_id: int, batch_size: int, device: Any) -> Tensor:
    """Pairwise data: `[N, 2]` (chosen, rejected) rewards; regression: `[N, A]` attribute predictions."""
    was = module.training
    module.eval()
    outs = []
    try:
        for s in range(0, len(data), batch_size):
            batch = collate_rm(data, range(s, min(s + batch_size, len(data))), pad_id).to(device)
            out = module(batch.input_ids, batch.attention_mask, batch.n_pairs, batch.groups)
            if "pal_logits" in out:
                outs.append(out["pal_logits"].float().cpu())
            elif data.objective == "regression":
                outs.append(out["scores"].float().cpu())
            else:
                b = batch.n_pairs
                outs.append(torch.stack([out["scores"][:b, 0], out["scores"][b:2 * b, 0]], dim=-1).float().cpu())
    finally:
        module.train(was)
    return torch.cat(outs)


def _pair_report(chosen: list[float], rejected: list[float], categories: list[str] | None, bins: int,
                 run_dir: Path, title: str) -> dict[str, Any]:
    from alignkit.rewards.evaluate import (
        calibration_errors,
        pairwise_accuracy,
        pairwise_probabilities,
        reliability_diagram,
    )

    report: dict[str, Any] = dict(pairwise_accuracy(chosen, rejected, categories))
    probs, labels = pairwise_probabilities(chosen, rejected)
    for b in sorted({5, 10, 20, bins}):
        cal = calibration_errors(probs, labels, b)
        report[f"calibration_bin{b}"] = {k: cal[k] for k in ("ece", "ace", "mce")}
    cal = calibration_errors(probs, labels, bins)
    report["ece"] = cal["ece"]
    report["reliability_plot"] = str(reliability_diagram(cal, run_dir / "reliability.png", title=title))
    return report


def evaluate_rm(module: RMTrainModule, data: RMData, cfg: RewardTrainConfig, pad_id: int, device: Any,
                run_dir: Path, attributes: Sequence[str], weights: Sequence[float]) -> dict[str, Any]:
    """eval.json's content: pairwise accuracy (overall and by task/user), ECE/ACE/MCE and a reliability diagram;
    regression: masked MSE per attribute, plus pairwise accuracy/ECE on same-prompt completions ordered by the
    weighted gold scalar (both scalars over the attributes labelled for both completions)."""
    bs = cfg.eval_batch_size or cfg.batch_size
    pred = predict(module, data, pad_id, bs, device)
    report: dict[str, Any] = {"objective": cfg.objective, "examples": len(data), "skipped": data.skipped}
    if cfg.objective == "regression":
        labels = torch.tensor(data.labels)
        mask = labels != -100.0
        report["mse"] = float(((pred - labels) ** 2 * mask).sum() / mask.sum().clamp(min=1))
        report["mse_by_attribute"] = {a: (float(((pred[:, k] - labels[:, k]) ** 2)[mask[:, k]].mean())
                                          if bool(mask[:, k].any()) else None) for k, a in enumerate(attributes)}
        w = torch.tensor(list(weights))
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(data.prompt_keys):
            by_prompt[key].append(i)
        chosen, rejected = [], []
        for members in by_prompt.values():
            for i in members:
                for j in members:
                    # Both scalars over the attributes labelled for both completions (HelpSteer2 labels all).
                    common = (mask[i] & mask[j]).float() * w
                    if float(labels[i].clamp(min=0) @ common) > float(labels[j].clamp(min=0) @ common):
                        chosen.append(float(pred[i] @ common))
                        rejected.append(float(pred[j] @ common))
        if chosen:
            report["pairs_from_gold_scalar"] = _pair_report(chosen, rejected, None, cfg.eval_bins, run_dir,
                                                            "regression RM: pairs by gold scalar")
        return report
    cats = [data.group_names[g] if g >= 0 else "<unseen>" for g in data.groups] if data.groups else None
    report.update(_pair_report(pred[:, 0].tolist(), pred[:, 1].tolist(), cats, cfg.eval_bins, run_dir,
                               f"{cfg.objective} RM: pairwise calibration"))
    return report


# ---------------------------------------------------------------------------------------------------------------
# The entry point


def _read(path: str, cfg: RewardTrainConfig) -> list[Any]:
    """Records of the objective's kind; pairwise objectives also take ranked lists (auto-detected)."""
    from alignkit.data.io import read_records

    found = read_records(path, None if cfg.data_kind == "pairwise" else cfg.data_kind)
    return list(found.records)


def as_rm_records(records: list[Any], cfg: RewardTrainConfig, source: str, say: Any = print) -> list[Any]:
    """Check the records' kind; for pairwise objectives, ranked lists become every pair with different scores
    (BT's listwise generalisation, spec §7.1: the mean over valid pairs; ties are excluded and counted)."""
    from alignkit.data.convert import listwise_to_pairwise
    from alignkit.data.records import ListwiseExample

    want = ScoredExample if cfg.data_kind == "scored" else PairwiseExample
    if cfg.data_kind == "pairwise" and records and all(isinstance(r, ListwiseExample) for r in records):
        pairs, stats = listwise_to_pairwise(records, "all-pairs")
        say(stats.summary())
        return pairs
    wrong = next((r for r in records if not isinstance(r, want)), None)
    if wrong is not None:
        extra = " or ranked lists" if cfg.data_kind == "pairwise" else ""
        raise DataError(f"objective {cfg.objective} trains on {cfg.data_kind} records{extra}, got "
                        f"{type(wrong).__name__}", source=source)
    return records


@dataclass
class RewardTrainResult:
    run_dir: Path
    steps: int
    final_dir: Path | None
    eval: dict[str, Any]
    summary: dict[str, Any]
    reward: RewardModel | PALReward | None = None


def _make_step(cfg: RewardTrainConfig, names: Sequence[str], attributes: Sequence[str], state: dict[str, Any]
               ) -> Any:
    if cfg.objective in ("bt", "principle"):
        return BTStep(cfg.center_coef)
    if cfg.objective == "regression":
        return RegressionStep(attributes)
    if cfg.objective == "more":
        return MOREStep(names, cfg.more_alpha, cfg.more_normalize, state)
    return PALStep()


def _eval_fn(step: Any, data: RMData, pad_id: int, batch_size: int) -> Any:
    def evaluate(model: nn.Module) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for s in range(0, len(data), batch_size):
            idx = list(range(s, min(s + batch_size, len(data))))
            loss, metrics, _ = step(model, collate_rm(data, idx, pad_id), "eval")
            for k, v in {"loss": float(loss), **metrics}.items():
                sums[k] += float(v) * len(idx)
        return {k: v / len(data) for k, v in sums.items()}

    return evaluate


def train_reward_model(cfg: RewardTrainConfig, *, records: Sequence[Any] | None = None,
                       eval_records: Sequence[Any] | None = None, accelerator: Any = None, log: Any = None,
                       on_checkpoint: Any = None) -> RewardTrainResult:
    """Train a reward model with `cfg.objective` through `train_loop`; see the module docstring for the run
    directory. `records`/`eval_records` bypass reading `cfg.data`/`cfg.eval_data` (Python use)."""
    from alignkit.train.engine import make_accelerator, seed_everything, split_eval
    from alignkit.train.loop import train_loop

    cfg.validate(need_data=records is None)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    accelerator = accelerator or make_accelerator()
    main = accelerator.is_main_process
    say = log or (print if main else (lambda _m: None))
    seed_everything(cfg.seed)
    train_records = as_rm_records(list(records) if records is not None else _read(cfg.data, cfg), cfg,
                                  cfg.data or "<records>", say)
    if eval_records is None and cfg.eval_data:
        eval_records = _read(cfg.eval_data, cfg)
    if eval_records is not None:
        eval_records = as_rm_records(list(eval_records), cfg, cfg.eval_data or "<eval records>", say)
    if eval_records is None:
        train_records, eval_records = split_eval(train_records, cfg.eval_split, cfg.seed)
    if not train_records:
        raise DataError(f"no training records for objective {cfg.objective}", source=cfg.data or "<records>")

    attributes: list[str] = []
    weights: list[float] = [1.0]
    if cfg.objective == "regression":
        attributes = resolve_attributes(train_records, cfg)
        weights = (list(cfg.attribute_weights) if cfg.attribute_weights else
                   list(HELPSTEER2_WEIGHTS) if attributes == HELPSTEER2_ATTRIBUTES else [1.0] * len(attributes))
        if len(weights) != len(attributes):
            raise ConfigError(f"{len(weights)} attribute_weights for attributes {attributes}")
    rm = build_reward_model(cfg, num_labels=max(1, len(attributes)))
    if attributes:
        rm.attributes, rm.weights = attributes, [float(w) for w in weights]
    if cfg.objective == "principle" and cfg.principles:
        rm.principles = list(cfg.principles)
    tokenizer = rm.tokenizer
    pad_id = int(tokenizer.pad_token_id)

    train_data = tokenize_rm_records(train_records, cfg, tokenizer, attributes=attributes, desc="tokenising train")
    names = train_data.group_names
    eval_data = (tokenize_rm_records(eval_records, cfg, tokenizer, group_names=names, attributes=attributes,
                                     desc="tokenising eval") if eval_records else None)
    say(f"train data: {len(train_data)} examples ({train_data.stats.summary()}; left out: "
        f"{train_data.skip_summary()})")
    if eval_data is not None:
        say(f"eval data: {len(eval_data)} examples ({eval_data.stats.summary()}; left out: "
            f"{eval_data.skip_summary()})")
    if not len(train_data):
        raise DataError(f"every training record was left out ({train_data.skip_summary()})")

    pal = None
    if cfg.objective == "pal":
        hidden = rm.model.config.get_text_config().hidden_size
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            pal = PALB(len(names), cfg.pal_k, hidden, cfg.pal_dim or hidden, cfg.pal_temperature)
    module = prepare_trainable(rm, cfg, pal)
    device = accelerator.device
    module.to(device)

    run_dir = Path(cfg.output_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = replace(cfg, attributes=attributes or list(cfg.attributes),
                           attribute_weights=weights if attributes else list(cfg.attribute_weights))
        save_config(resolved, run_dir / "config.yaml")
    accelerator.wait_for_everyone()

    state: dict[str, Any] = {}
    step = DeviceStep(_make_step(cfg, names, attributes, state), device)
    source = (TaskBalancedSource(train_data, pad_id, cfg.batch_size) if cfg.objective == "more"
              else RMSource(train_data, pad_id))
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    # The final evaluation (eval.json) covers the last step, so in-loop evaluation runs only when asked for.
    eval_fn = (_eval_fn(step, eval_data, pad_id, eval_bs)
               if eval_data is not None and len(eval_data) and cfg.eval_every else None)
    extra = f", tasks {names}" if cfg.objective == "more" else f", {len(names)} users" if names else ""
    say(f"reward objective {cfg.objective} (tune={cfg.tune}{extra})")
    seed_everything(cfg.seed + 1)
    loop = train_loop(module, source, step, cfg, run_dir, accelerator=accelerator, eval_fn=eval_fn,
                      objective_state=state, lora=cfg.tune == "lora", log=say, on_checkpoint=on_checkpoint)

    final_dir: Path | None = None
    report: dict[str, Any] = {}
    reward: RewardModel | PALReward | None = None
    if main:
        if eval_data is not None and len(eval_data):
            report = evaluate_rm(module, eval_data, cfg, pad_id, device, run_dir, attributes, weights)
            report.update(run_dir=str(run_dir), steps=loop.steps)
            (run_dir / "eval.json").write_text(json.dumps(report, indent=2, default=_json_default))
            acc = report.get("accuracy", report.get("pairs_from_gold_scalar", {}).get("accuracy"))
            say(f"eval: {len(eval_data)} examples" + (f", accuracy {acc:.4f}" if acc is not None else "")
                + (f", ECE {report['ece']:.4f}" if "ece" in report else "")
                + (f", MSE {report['mse']:.4f}" if "mse" in report else ""))
        merge_lora_backbone(module.rm)
        rm.model = module.rm
        rm.model.eval()
        rm.name = f"rm:{run_dir / 'final'}"
        if pal is not None:
            reward = PALReward(rm, pal.cpu().eval(), names, name=f"pal:{run_dir / 'final'}")
            rm.model.cpu()
            final_dir = reward.save(run_dir / "final")
        else:
            rm.model.cpu()
            final_dir = rm.save(run_dir / "final")
            reward = rm
    summary = {"objective": cfg.objective, "tune": cfg.tune, "steps": loop.steps, "train_examples": len(train_data),
               "eval_examples": len(eval_data) if eval_data is not None else 0,
               "left_out_train": train_data.skipped, "left_out_eval": eval_data.skipped if eval_data else {},
               "truncation": train_data.stats.summary(), "skipped_steps": loop.skipped_steps,
               "groups": names, "attributes": attributes, "last": loop.last_metrics,
               "eval": {k: v for k, v in report.items() if isinstance(v, (int, float))}}
    if main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    accelerator.wait_for_everyone()
    return RewardTrainResult(run_dir, loop.steps, final_dir, report, summary, reward)


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)
