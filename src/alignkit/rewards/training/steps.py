"""One step class per reward-model objective: `step(model, batch, split) -> (loss, metrics, n_tokens)`, the
`step_fn` contract of `alignkit.train.loop.train_loop` (spec objectives.md §7.1 BT, §7.2 regression, §7.3 MORE,
§7.4 PAL-B; testtime_eval.md §B6 ReMoDetect). A new reward-model kind is one new class here plus one line in `_make_step`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.rewards.losses import bt_loss, more_loss, more_task_weights, regression_loss, remodetect_loss
from alignkit.rewards.pal import pal_loss
from alignkit.rewards.training.config import RewardTrainConfig
from alignkit.rewards.training.data import RMBatch, pad_right
from alignkit.rewards.training.module import _parts

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


class ReMoDetectStep:
    """ReMoDetect continual preference tuning (testtime_eval.md §B6, wave2_selfalign_merge.md §9): the triplet
    loss on (LLM, mixed, human) texts, plus, on training steps, the replay term l2_ratio · Σ (r_θ − r_orig)² on
    one replay batch per step. r_orig are the original RM's rewards of the replay texts, computed once before
    training (`replay_rewards`): the same numbers a frozen copy would give, without a second model in memory.
    The replay position lives in `state` (checkpointed by the loop, so a resumed run draws the same texts)."""

    def __init__(self, lambdas: Sequence[float], beta: float, replay: Sequence[list[int]] = (),
                 replay_orig: Sequence[float] = (), l2_ratio: float = 0.01, replay_batch_size: int = 1,
                 pad_id: int = 0, state: dict[str, Any] | None = None) -> None:
        if len(replay) != len(replay_orig):
            raise ValueError("one original reward per replay text")
        self.lambdas, self.beta, self.l2_ratio = list(lambdas), beta, l2_ratio
        self.replay, self.replay_orig = list(replay), [float(x) for x in replay_orig]
        self.replay_bs, self.pad_id = replay_batch_size, pad_id
        self.state = state if state is not None else {}

    def _replay_batch(self, model: nn.Module, device: Any) -> tuple[Tensor, Tensor]:
        pos = int(self.state.get("replay_pos", 0))
        idx = [(pos + j) % len(self.replay) for j in range(self.replay_bs)]
        self.state["replay_pos"] = float((pos + self.replay_bs) % len(self.replay))
        ids, att = pad_right([self.replay[i] for i in idx], self.pad_id)
        scores = model(ids.to(device), att.to(device))["scores"][:, 0]
        return scores, torch.tensor([self.replay_orig[i] for i in idx], device=device, dtype=scores.dtype)

    def __call__(self, model: nn.Module, batch: RMBatch, split: str = "train") -> StepResult:
        b = batch.n_pairs
        r = model(batch.input_ids, batch.attention_mask, b)["scores"][:, 0]
        r_llm, r_human, r_mixed = r[:b], r[b:2 * b], r[2 * b:3 * b]
        replay = orig = None
        if split == "train" and self.replay:
            replay, orig = self._replay_batch(model, batch.input_ids.device)
        loss, parts = remodetect_loss(r_llm, r_mixed, r_human, lambdas=self.lambdas, beta=self.beta,
                                      replay=replay, replay_orig=orig, l2_ratio=self.l2_ratio)
        metrics = _pair_metrics(r_llm, r_human)  # accuracy = P(r(LLM text) > r(human text))
        metrics["accuracy_mixed"] = float((r_mixed > r_human).float().mean())
        metrics.update(parts)
        return loss, metrics, batch.n_tokens


@torch.no_grad()
def replay_rewards(model: nn.Module, seqs: Sequence[list[int]], pad_id: int, batch_size: int, device: Any
                   ) -> list[float]:
    """The (still original) module's rewards of the replay texts, in eval mode: ReMoDetect's r_orig."""
    was = model.training
    model.eval()
    out: list[float] = []
    try:
        for s in range(0, len(seqs), batch_size):
            ids, att = pad_right(list(seqs[s:s + batch_size]), pad_id)
            out += model(ids.to(device), att.to(device))["scores"][:, 0].float().cpu().tolist()
    finally:
        model.train(was)
    return out


def _unwrap(model: nn.Module) -> Any:
    return getattr(model, "module", model)


class DeviceStep:
    """Moves each batch to the device before the objective's step."""

    def __init__(self, step: Any, device: Any) -> None:
        self.step, self.device = step, device

    def __call__(self, model: nn.Module, batch: RMBatch, split: str = "train") -> StepResult:
        return self.step(model, batch.to(self.device), split)


def _make_step(cfg: RewardTrainConfig, names: Sequence[str], attributes: Sequence[str], state: dict[str, Any],
               replay: Sequence[list[int]] = (), replay_orig: Sequence[float] = (), pad_id: int = 0) -> Any:
    if cfg.objective == "remodetect":
        return ReMoDetectStep(cfg.remodetect_lambdas, cfg.remodetect_beta, replay, replay_orig, cfg.replay_l2_ratio,
                              cfg.replay_batch_size, pad_id, state)
    if cfg.objective in ("bt", "principle"):
        return BTStep(cfg.center_coef)
    if cfg.objective == "regression":
        return RegressionStep(attributes)
    if cfg.objective == "more":
        return MOREStep(names, cfg.more_alpha, cfg.more_normalize, state)
    return PALStep()
