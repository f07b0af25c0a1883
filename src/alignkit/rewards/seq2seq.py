"""Sequence-to-sequence reward model → token-level rewards (spec wave2_feedback_safety.md §3; Zhou et al. 2024,
*Sequence to Sequence Reward Modeling: Improving RLHF by Language Feedback*, arXiv 2409.00162; no official code).

Training (§3.1): the RM is a causal LM (start from the SFT model) trained by SFT to map a response to the preferred
one: T_src(x, rejected) → chosen ("correction") and T_src(x, chosen) → chosen ("identity"), 1 : 1, token-mean NLL per
sequence: `seq2seq_rm_records(pairs)` writes those SFT records; train them with `objective: sft` and
`objective_args.per_sequence: true` (L_RM = NLL̄(correction) + NLL̄(identity) is twice that mean).

Reward extraction (§3.2), one teacher-forced forward: for a policy sample y (with its EOS) and s = T_src(x, y),
a_t = argmax_v p_φ(v | s, y_<t); d = the first t with a_t ≠ y_t (greedy decoding of the RM from s emits exactly
y_<d, then diverges at d). r_t = +c⁺ for t < d; for t ≥ d, r_t = −c⁻ where a_t ≠ y_t, and where a_t = y_t
+c⁺ (variant A, default) or 0 (variant B) [uncertain which the paper uses]. c⁺ = c⁻ = 1 [uncertain].

`Seq2SeqReward` is a token reward: `score_tokens(prompts, completions)` gives one reward per completion token,
and as a Reward its scores are their mean (`reduce="mean"`, length-neutral, the spec's GRPO/RLOO default) or sum,
with the token rewards in `RewardResult.token_scores` (the Reward protocol's per-token field). Online RL passes the
sampled token ids (`completion_token_ids`) so the rewards align 1:1 with the policy's tokens (RM and policy must
share the tokenizer: `check_vocabulary`) and uses them per `objective_args.token_rewards` (`rl.dense`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.data.records import PairwiseExample, Prompt, SFTExample, prompt_text
from alignkit.data.tokenize import IGNORE_INDEX, encode_completion, encode_prompt
from alignkit.errors import ConfigError, RewardError
from alignkit.rewards.base import RewardResult
from alignkit.train.logps import completion_logits

SRC_TEMPLATE = ("Rewrite the response so that it answers the question as well as possible; if it is already the "
                "best answer, repeat it unchanged.\n\n[Question]\n{prompt}\n\n[Response]\n{response}")
VARIANTS = ("A", "B")


def source_prompt(prompt: Prompt, response: str, template: str = SRC_TEMPLATE) -> list[dict[str, str]]:
    """T_src(x, y): one user turn holding the question and the response to map."""
    return [{"role": "user", "content": template.format(prompt=prompt_text(prompt), response=response)}]


def seq2seq_rm_records(pairs: Sequence[PairwiseExample], template: str = SRC_TEMPLATE) -> list[SFTExample]:
    """Two SFT records per pair (§3.1): correction (rejected → chosen) and identity (chosen → chosen)."""
    out = []
    for p in pairs:
        base = {**p.metadata, "builder": "seq2seq_rm"}
        out.append(SFTExample(source_prompt(p.prompt, p.rejected, template), p.chosen,
                              {**base, "mapping": "correction"}))
        out.append(SFTExample(source_prompt(p.prompt, p.chosen, template), p.chosen, {**base, "mapping": "identity"}))
    return out


def token_rewards(argmax: Sequence[int], targets: Sequence[int], *, c_plus: float = 1.0, c_minus: float = 1.0,
                  variant: str = "A") -> list[float]:
    """§3.2 step 4 from the teacher-forced argmax. Worked: y = [A,B,C,D,E], a = [A,B,X,D,Y] → d = 3;
    variant A [+1, +1, −1, +1, −1] (mean 0.2), variant B [+1, +1, −1, 0, −1]."""
    if variant not in VARIANTS:
        raise ConfigError(f"seq2seq reward variant must be A or B, got {variant!r}")
    if len(argmax) != len(targets):
        raise ConfigError(f"{len(argmax)} predictions for {len(targets)} tokens")
    out: list[float] = []
    diverged = False
    for a, y in zip(argmax, targets, strict=True):
        if a != y:
            diverged = True
            out.append(-c_minus)
        else:
            out.append(c_plus if (not diverged or variant == "A") else 0.0)
    return out


class Seq2SeqReward:
    """Token-level rewards from a seq2seq RM (module docstring); usable wherever a Reward is."""

    token_level = True  # online RL passes `completion_token_ids` to a reward that says so

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str = "seq2seq", template: str = SRC_TEMPLATE,
                 c_plus: float = 1.0, c_minus: float = 1.0, variant: str = "A", reduce: str = "mean",
                 batch_size: int = 8) -> None:
        if reduce not in ("mean", "sum"):
            raise ConfigError(f"seq2seq reward reduce must be mean or sum, got {reduce!r}")
        if variant not in VARIANTS:
            raise ConfigError(f"seq2seq reward variant must be A or B, got {variant!r}")
        self.model, self.tokenizer, self.name, self.template = model.eval(), tokenizer, name, template
        self.c_plus, self.c_minus, self.variant, self.reduce, self.batch_size = c_plus, c_minus, variant, reduce, \
            batch_size

    def check_vocabulary(self, policy_tokenizer: Any) -> None:
        """Rewards align 1:1 with policy tokens only under the same tokenizer (spec §3.5)."""
        if len(policy_tokenizer) != len(self.tokenizer) or policy_tokenizer.get_vocab() != self.tokenizer.get_vocab():
            raise RewardError(f"reward {self.name!r}: the seq2seq RM's tokenizer differs from the policy's; token "
                              "rewards need the same tokenizer")

    @torch.no_grad()
    def score_tokens(self, prompts: Sequence[Prompt], completions: Sequence[str],
                     completion_token_ids: Sequence[Sequence[int]] | None = None) -> list[list[float]]:
        """One reward per completion token (the given ids, else the text's tokens + EOS)."""
        targets = ([list(t) for t in completion_token_ids] if completion_token_ids is not None
                   else [encode_completion(self.tokenizer, c) for c in completions])
        device = next(self.model.parameters()).device
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else
                  self.tokenizer.eos_token_id)
        out: list[list[float]] = []
        for s in range(0, len(prompts), self.batch_size):
            rows = range(s, min(s + self.batch_size, len(prompts)))
            seqs = [(encode_prompt(self.tokenizer, source_prompt(prompts[i], completions[i], self.template)),
                     targets[i]) for i in rows]
            width = max(len(p) + len(c) for p, c in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            att = torch.zeros_like(ids)
            lab = torch.full_like(ids, IGNORE_INDEX)
            for r, (p, c) in enumerate(seqs):
                ids[r, : len(p) + len(c)] = torch.tensor(p + c)
                att[r, : len(p) + len(c)] = 1
                lab[r, len(p): len(p) + len(c)] = torch.tensor(c, dtype=torch.long)
            logits, tgt, row_idx, _ = completion_logits(self.model, ids.to(device), att.to(device), lab.to(device))
            pred = logits.argmax(-1).cpu().tolist()
            rr, tt = row_idx.cpu().tolist(), tgt.cpu().tolist()
            per_row: list[tuple[list[int], list[int]]] = [([], []) for _ in seqs]
            for k, r in enumerate(rr):  # rows come in order, positions left to right
                per_row[r][0].append(pred[k])
                per_row[r][1].append(tt[k])
            out.extend(token_rewards(a, y, c_plus=self.c_plus, c_minus=self.c_minus, variant=self.variant)
                       for a, y in per_row)
        return out

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        toks = self.score_tokens(prompts, completions, context.get("completion_token_ids"))
        red = [(sum(t) / max(len(t), 1)) if self.reduce == "mean" else float(sum(t)) for t in toks]
        return RewardResult(red, token_scores=toks)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Seq2SeqReward:
        """A trained RM directory (`alignkit train --objective sft` on `seq2seq_rm_records`, then its final/)."""
        from alignkit.models import load_model

        model, tok = load_model(str(path))
        meta_path = Path(path) / "alignkit_seq2seq_rm.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return cls(model, tok, **{**{k: meta[k] for k in ("template",) if k in meta}, **kwargs})


def ppo_token_rewards(r: Sequence[float], logp: Sequence[float], logp_ref: Sequence[float], *, alpha: float = 1.0,
                      beta_kl: float = 0.05) -> list[float]:
    """§3.3 PPO form R_t = α·r_t − β_KL·(log π_θ(y_t) − log π_ref(y_t)). Worked: the §3.4 vectors give
    [0.9975, 1.005, −1.02, 1.0, −0.985], sum 0.9975."""
    return [alpha * a - beta_kl * (p - q) for a, p, q in zip(r, logp, logp_ref, strict=True)]
