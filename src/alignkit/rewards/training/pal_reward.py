"""`PALReward`: a trained PAL-B reward model (Chen et al. 2024, spec objectives.md §7.4) as a `Reward`, with
few-shot fitting of unseen users and its own save/load next to the RM directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import Prompt
from alignkit.data.tokenize import encode_prompt
from alignkit.errors import RewardError
from alignkit.rewards.base import RewardResult, unpack_prompts
from alignkit.rewards.model import (
    RewardModel,
    with_principles,
)
from alignkit.rewards.pal import PALB, fit_new_user
from alignkit.rewards.training.data import pad_right
from alignkit.rewards.training.module import _pal_reward, pal_user_weights, pooled_hidden

PAL_META = "alignkit_pal.json"


PAL_WEIGHTS = "pal.safetensors"


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
