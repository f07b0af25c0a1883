"""Critique reward model (MM-RLHF; spec wave2_feedback_safety.md §4; Zhang et al. 2025, arXiv 2502.10391, code
Kwai-YuanQi/MM-RLHF `reward_trainer.py::compute_loss`, `llava_qwen.py::RewardHead`, `eval_mm_reward_bench.py`).

One causal LM with a scalar head. Given (x, y) it first writes a critique z of the answer (greedy), then the head
reads the last-layer hidden state at the last non-pad position of [T_rm(x, y); z] and gives r. T_rm is one user
turn (an evaluator instruction, the question, the response, an "evaluation" cue); z is the assistant turn, and the
only labelled tokens in training. Text-only adaptation of the paper (spec §4.7).

* `RewardHead`: dropout → Linear(H, H) → tanh → dropout → Linear(H, 1) [code].
* `CritiqueRM.forward(ids, mask, labels)` → (r `[N]`, token-mean critique NLL `[N]`): one forward gives both;
  right padding (the reward index is the last attended position).
* `critique_rm_loss`: L = w_f·L_BT + c_ctr·mean((r_c + r_r)²) + w_c·mean[(NLL_c + NLL_r)·(1 − no_critic)],
  L_BT = mean over non-tie pairs of −log σ(r_c − r_r − m), ties add `tie_weight`·mean((r_c − r_r)²)
  (`tie_weight` is not in the released config: 1.0, spec [uncertain]).
* `CritiqueReward`: the Reward protocol (usable in builders, best-of-n, QAlign, RL): critiques are generated
  greedily (cached by hash of (x, y)), or passed as `critiques=` (gold critiques, `use_gt_critic`), or skipped
  (`with_critique=False`, the `wo_critic` ablation). `RewardResult.info["critiques"]` holds them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from alignkit.data.records import Prompt, prompt_text
from alignkit.data.tokenize import IGNORE_INDEX, encode_completion, encode_prompt
from alignkit.errors import ModelError
from alignkit.rewards.base import RewardResult
from alignkit.train.logps import decoder_and_head, head_logits

RM_TEMPLATE = ("You are an expert evaluator. Judge the response to the question below for correctness, clarity and "
               "completeness, and explain its strengths and weaknesses.\n\n[Question]\n{prompt}\n\n[Response]\n"
               "{response}\n\n[Evaluation]")
META_FILE = "alignkit_critique_rm.json"


class RewardHead(nn.Module):
    def __init__(self, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)[..., 0]


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the last attended position per row (right padding: attention_mask.cumsum − 1 at its maximum)."""
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), pos, torch.zeros_like(pos)).max(dim=1).values


class CritiqueRM(nn.Module):
    """The causal LM plus its reward head; `forward` → (rewards `[N]`, critique NLL `[N]`, 0 where no labels)."""

    def __init__(self, lm: nn.Module, head: RewardHead) -> None:
        super().__init__()
        self.lm, self.head = lm, head

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        decoder, lm_head = decoder_and_head(self.lm)
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        idx = last_token_index(attention_mask)
        rewards = self.head(hidden[torch.arange(hidden.shape[0], device=hidden.device), idx].float())
        targets = labels[:, 1:]
        rows, cols = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
        nll_tok = F.cross_entropy(head_logits(self.lm, lm_head, hidden[:, :-1][rows, cols]), targets[rows, cols],
                                  reduction="none")
        n = input_ids.shape[0]
        sums = torch.zeros(n, dtype=nll_tok.dtype, device=nll_tok.device).index_add(0, rows, nll_tok)
        counts = (targets != IGNORE_INDEX).sum(1).to(sums.dtype)
        return rewards, sums / counts.clamp(min=1)


def critique_rm_loss(r_c: Tensor, r_r: Tensor, nll_c: Tensor, nll_r: Tensor, no_critic: Tensor,
                     margin: Tensor | None = None, is_tie: Tensor | None = None, *, bt_weight: float = 1.0,
                     critique_weight: float = 1.0, center_coef: float = 0.01, tie_weight: float = 1.0
                     ) -> tuple[Tensor, dict[str, float]]:
    """MM-RLHF's joint loss (module docstring; spec §4.3). Worked: r_c = 1.2, r_r = −0.3, NLL 1.10 / 1.40 →
    2.709513; with no_critic = 1 → 0.209513."""
    tie = is_tie.bool() if is_tie is not None else torch.zeros_like(r_c, dtype=torch.bool)
    m = margin if margin is not None else torch.zeros_like(r_c)
    d = r_c - r_r
    bt = F.softplus(-(d - m))[~tie].mean() if bool((~tie).any()) else d.sum() * 0.0
    if bool(tie.any()):
        bt = bt + tie_weight * (d[tie] ** 2).mean()
    center = ((r_c + r_r) ** 2).mean()
    crit = ((nll_c + nll_r) * (1.0 - no_critic.to(nll_c.dtype))).mean()
    loss = bt_weight * bt + center_coef * center + critique_weight * crit
    return loss, {"bt_loss": float(bt.detach()), "center_loss": float(center.detach()),
                  "critique_nll": float(crit.detach()), "accuracy": float((d.detach() > 0).float().mean()),
                  "margin": float(d.detach().mean())}


def rm_prompt(prompt: Prompt, response: str, template: str = RM_TEMPLATE) -> list[dict[str, str]]:
    """T_rm(x, y): one user turn holding the evaluator instruction, the question and the response."""
    return [{"role": "user", "content": template.format(prompt=prompt_text(prompt), response=response)}]


def encode_rm(tokenizer: Any, prompt: Prompt, response: str, critique: str | None, template: str = RM_TEMPLATE,
              max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(input ids, labels) of [T_rm(x, y); z]: labels only on z (+EOS); no critique → no labels."""
    p = encode_prompt(tokenizer, rm_prompt(prompt, response, template))
    c = encode_completion(tokenizer, critique) if critique else []
    if max_length is not None and len(p) + len(c) > max_length:
        keep_c = min(len(c), max(max_length // 2, max_length - len(p)))
        c, p = c[:keep_c], p[len(p) - (max_length - keep_c):]
    return p + c, [IGNORE_INDEX] * len(p) + c


def pad_right(seqs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    t = max(len(s[0]) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), t), dtype=torch.long)
    lab = torch.full((len(seqs), t), IGNORE_INDEX, dtype=torch.long)
    for i, (x, y) in enumerate(seqs):
        ids[i, : len(x)], att[i, : len(x)], lab[i, : len(y)] = torch.tensor(x), 1, torch.tensor(y)
    return ids, att, lab


class CritiqueReward:
    """A trained critique RM as a Reward: critique first (greedy), then the head's score (spec §4.4)."""

    def __init__(self, module: CritiqueRM, tokenizer: Any, *, name: str = "critique_rm", template: str = RM_TEMPLATE,
                 max_new_tokens: int = 256, with_critique: bool = True, batch_size: int = 8) -> None:
        self.module, self.tokenizer, self.name, self.template = module.eval(), tokenizer, name, template
        self.max_new_tokens, self.with_critique, self.batch_size = max_new_tokens, with_critique, batch_size
        self.cache: dict[str, str] = {}

    def _key(self, prompt: Prompt, response: str) -> str:
        return hashlib.sha256(json.dumps([prompt, response], ensure_ascii=False).encode()).hexdigest()

    @torch.no_grad()
    def critiques(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> list[str]:
        """Greedy critiques z of each (x, y), cached by hash(x, y)."""
        todo = [i for i, (p, c) in enumerate(zip(prompts, completions, strict=True))
                if self._key(p, c) not in self.cache]
        lm = self.module.lm
        device = next(lm.parameters()).device
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else
                  self.tokenizer.eos_token_id)
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s:s + self.batch_size]
            enc = [encode_prompt(self.tokenizer, rm_prompt(prompts[i], completions[i], self.template)) for i in chunk]
            t = max(len(e) for e in enc)
            # Generation pads on the left, so every row continues from its last prompt token.
            ids = torch.tensor([[pad] * (t - len(e)) + e for e in enc], device=device)
            att = torch.tensor([[0] * (t - len(e)) + [1] * len(e) for e in enc], device=device)
            gen = lm.generate(input_ids=ids, attention_mask=att, max_new_tokens=self.max_new_tokens, do_sample=False,
                              pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id)
            for i, row in zip(chunk, gen[:, t:].tolist(), strict=True):
                eos = self.tokenizer.eos_token_id
                row = row[: row.index(eos)] if eos in row else row
                self.cache[self._key(prompts[i], completions[i])] = self.tokenizer.decode(row,
                                                                                        skip_special_tokens=True)
        return [self.cache[self._key(p, c)] for p, c in zip(prompts, completions, strict=True)]

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], completions: Sequence[str], critiques: Sequence[str | None]
              ) -> list[float]:
        device = next(self.module.parameters()).device
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else
                  self.tokenizer.eos_token_id)
        out: list[float] = []
        for s in range(0, len(prompts), self.batch_size):
            seqs = [encode_rm(self.tokenizer, p, c, z, self.template)
                    for p, c, z in zip(prompts[s:s + self.batch_size], completions[s:s + self.batch_size],
                                       critiques[s:s + self.batch_size], strict=True)]
            ids, att, lab = pad_right(seqs, pad)
            r, _ = self.module(ids.to(device), att.to(device), lab.to(device))
            out.extend(float(v) for v in r.float().cpu())
        return out

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        given = context.get("critiques")
        if given is not None:
            zs: list[str | None] = list(given)
        elif self.with_critique:
            zs = list(self.critiques(prompts, completions))
        else:
            zs = [None] * len(completions)
        return RewardResult(self.score(prompts, completions, zs), info={"critiques": zs})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.module.lm.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        save_file({k: v.contiguous().cpu() for k, v in self.module.head.state_dict().items()},
                  str(path / "reward_head.safetensors"))
        hidden = self.module.head.net[1].in_features
        (path / META_FILE).write_text(json.dumps({"name": self.name, "template": self.template, "hidden": hidden,
                                                  "max_new_tokens": self.max_new_tokens}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> CritiqueReward:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / META_FILE).exists():
            raise ModelError(f"{path}: not a critique reward model (no {META_FILE})")
        meta = json.loads((path / META_FILE).read_text())
        lm = AutoModelForCausalLM.from_pretrained(str(path))
        head = RewardHead(int(meta["hidden"]))
        head.load_state_dict(load_file(str(path / "reward_head.safetensors")))
        opts = {"name": meta.get("name", f"rm:{path}"), "template": meta.get("template", RM_TEMPLATE),
                "max_new_tokens": int(meta.get("max_new_tokens", 256)), **kwargs}
        return cls(CritiqueRM(lm, head), AutoTokenizer.from_pretrained(str(path)), **opts)
