"""What reward training optimises: the RM backbone + head (`RMTrainModule`), optionally with the PAL-B head, and
the `tune` modes (full, LoRA on the backbone, head only).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.errors import ConfigError
from alignkit.rewards.model import (
    META_FILE,
    RewardModel,
    ScalarHeadModel,
    _backbone_and_head,
)
from alignkit.rewards.pal import PALB
from alignkit.rewards.training.config import RewardTrainConfig


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
