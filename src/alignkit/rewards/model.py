"""Reward models as Rewards: a scalar (or multi-attribute) head on any causal LM, and DPO's implicit reward.

RewardModel (spec objectives.md §7.1): backbone + linear head read at the **last non-pad token** of
prompt ⊕ completion ⊕ EOS, the prompt rendered with the chat template exactly as training does
(`alignkit.data.tokenize.encode_example`). `AutoModelForSequenceClassification` is used when the config has a
sequence-classification class; pooling is done here from the attention mask (so pad = EOS tokenizers such as
SmolLM2's still read the score at the EOS), and the head is applied to the pooled rows only. Configs without a
sequence-classification class get `ScalarHeadModel` (AutoModel backbone + `nn.Linear`, head in
`reward_head.safetensors`).

Multi-attribute heads (HelpSteer2 regression RM, §7.2) return every attribute in the result's attributes and a
scalar = Σ_k w_k·attr_k (HelpSteer2's [0.65, 0.8, 0.45, 0.55, −0.4] for its five attributes).

Principle-conditioned RMs (SALMON, Sun et al. 2023): `principles` text is prepended to the prompt as a system
message (or merged into an existing one), so one RM follows different written principles.

`implicit_dpo_reward(policy, reference, tokenizer, beta)`: r(x, y) = β·(S_θ(y) − S_ref(y)) with summed completion
log-probs (RewardBench's DPO scoring, testtime_eval.md B1.1; objectives.md §0).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from alignkit.data.records import Prompt
from alignkit.data.tokenize import Encoded, Template, encode_completion, encode_example
from alignkit.errors import ModelError, RewardError
from alignkit.rewards.base import RewardResult, unpack_prompts

HELPSTEER2_ATTRIBUTES = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
HELPSTEER2_WEIGHTS = [0.65, 0.8, 0.45, 0.55, -0.4]
META_FILE = "alignkit_reward.json"
HEAD_FILE = "reward_head.safetensors"


def with_principles(prompt: Prompt, principles: str | Sequence[str] | None) -> Prompt:
    """SALMON-style principle conditioning: the principles become (the start of) the system message."""
    if not principles:
        return prompt
    text = principles if isinstance(principles, str) else "\n".join(f"- {p}" for p in principles)
    block = f"Judge the response by these principles:\n{text}"
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = block + "\n\n" + messages[0].get("content", "")
        return messages
    return [{"role": "system", "content": block}, *messages]


def encode_raw_text(tokenizer: Any, text: str, max_length: int) -> list[int]:
    """The text alone, no template and no EOS, cut to max_length (ReMoDetect scores raw text, testtime_eval.md
    §B6); an empty text reads as one EOS token so every sequence has a position to pool."""
    ids = encode_completion(tokenizer, text, add_eos=False)
    return ids[:max_length] or [tokenizer.eos_token_id]


def supports_sequence_classification(config: Any) -> bool:
    return type(config) in AutoModelForSequenceClassification._model_mapping


class ScalarHeadModel(nn.Module):
    """Fallback for configs without a sequence-classification class: AutoModel backbone + linear head."""

    def __init__(self, backbone: PreTrainedModel, num_labels: int = 1) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.score = nn.Linear(backbone.config.get_text_config().hidden_size, num_labels, bias=False)


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    if isinstance(model, ScalarHeadModel):
        return model.backbone, model.score
    prefix = getattr(model, "base_model_prefix", "model")
    backbone, head = getattr(model, prefix, None), getattr(model, "score", None)
    if isinstance(backbone, nn.Module) and isinstance(head, nn.Linear):
        return backbone, head
    return None


def pooled_scores(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Scores `[N, num_labels]` read at each row's last attended token (left or right padding)."""
    parts = _backbone_and_head(model)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    last = (positions * attention_mask).argmax(dim=-1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    if parts is None:  # encoder classifiers (e.g. DeBERTa) pool by themselves
        return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    backbone, head = parts
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    return head(hidden[rows, last]).float()


def _pad(seqs: Sequence[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, :len(s)] = 1
    return ids, att


class RewardModel:
    """A reward model implementing the Reward protocol. Build with `RewardModel.from_backbone(spec)` (new head on a
    causal LM), `RewardModel.load(path)` (a saved RM directory) or `RewardModel(model, tokenizer)`."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, *, name: str = "rm",
                 attributes: Sequence[str] | None = None, weights: Sequence[float] | None = None,
                 principles: str | Sequence[str] | None = None, batch_size: int = 8, max_length: int = 1024,
                 template: Template = "auto", raw_text: bool = False, progress: bool = False) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        n = int(getattr(model.config, "num_labels", 1) if not isinstance(model, ScalarHeadModel)
                else model.score.out_features)
        self.attributes = list(attributes) if attributes else (
            HELPSTEER2_ATTRIBUTES if n == 5 else [f"attr{k}" for k in range(n)] if n > 1 else ["reward"])
        if len(self.attributes) != n:
            raise RewardError(f"reward '{name}': {len(self.attributes)} attribute names for a {n}-output head")
        if weights is None:
            weights = HELPSTEER2_WEIGHTS if self.attributes == HELPSTEER2_ATTRIBUTES else [1.0] * n
        if len(weights) != n:
            raise RewardError(f"reward '{name}': {len(weights)} attribute weights for a {n}-output head")
        self.weights = [float(w) for w in weights]
        self.principles, self.batch_size, self.max_length = principles, batch_size, max_length
        self.template, self.raw_text, self.progress = template, raw_text, progress
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if hasattr(model.config, "pad_token_id") and model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, spec: str | PreTrainedModel = "tiny-random", tokenizer: PreTrainedTokenizerBase | None
                      = None, num_labels: int = 1, seed: int = 0, **kwargs: Any) -> RewardModel:
        """A fresh RM: the causal LM `spec` (alignkit model spec or a loaded model) with a new seeded head."""
        from alignkit.models import load_model

        if isinstance(spec, str):
            lm, tok = load_model(spec, seed=seed)
        else:
            if tokenizer is None:
                raise ModelError("RewardModel.from_backbone: pass the tokenizer with a loaded model")
            lm, tok = spec, tokenizer
        tokenizer = tokenizer or tok
        config = lm.config.__class__.from_dict(lm.config.to_dict())
        config.num_labels = num_labels
        config.pad_token_id = tokenizer.pad_token_id
        base_prefix = getattr(lm, "base_model_prefix", "model")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            if supports_sequence_classification(config):
                model: nn.Module = AutoModelForSequenceClassification.from_config(config, dtype=lm.dtype)
                getattr(model, model.base_model_prefix).load_state_dict(getattr(lm, base_prefix).state_dict())
            else:
                model = ScalarHeadModel(getattr(lm, base_prefix), num_labels)
            nn.init.normal_(_backbone_and_head(model)[1].weight, std=1.0 / (config.get_text_config().hidden_size
                                                                            ** 0.5))
        model.eval()
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> RewardModel:
        """Load a directory written by `save` (or any HF sequence-classification checkpoint with one or more
        labels). A causal-LM checkpoint gets a fresh head (warned by transformers)."""
        from alignkit.models import load_tokenizer, resolve_local

        path = resolve_local(str(path))
        meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).exists() else {}
        tokenizer = load_tokenizer(str(path))
        config = AutoConfig.from_pretrained(str(path))
        if (path / HEAD_FILE).exists():
            from safetensors.torch import load_file

            backbone = AutoModel.from_pretrained(str(path), use_safetensors=True)
            head = load_file(str(path / HEAD_FILE))["weight"]
            model: nn.Module = ScalarHeadModel(backbone, head.shape[0])
            model.score.weight.data.copy_(head)
        elif supports_sequence_classification(config):
            kw = {} if getattr(config, "num_labels", None) and meta else {"num_labels": meta.get("num_labels", 1)}
            model = AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True, **kw)
        else:
            raise ModelError(f"{path}: {type(config).__name__} has no sequence-classification class and no "
                             f"{HEAD_FILE}; cannot build a reward model")
        model.eval()
        opts = {k: meta[k] for k in ("attributes", "weights", "principles", "name") if meta.get(k) is not None}
        opts.update(kwargs)
        return cls(model, tokenizer, **opts)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if isinstance(self.model, ScalarHeadModel):
            from safetensors.torch import save_file

            self.model.backbone.save_pretrained(path, safe_serialization=True)
            save_file({"weight": self.model.score.weight.detach().contiguous()}, str(path / HEAD_FILE))
        else:
            self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        meta = {"name": self.name, "attributes": self.attributes, "weights": self.weights,
                "principles": self.principles, "num_labels": len(self.attributes)}
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    # -- scoring -----------------------------------------------------------------------------------------------
    def encode(self, prompt: Prompt | None, completion: str) -> list[int]:
        """Token ids the RM reads. `raw_text=True` (or an empty prompt) scores the completion text alone, as
        ReMoDetect does (testtime_eval.md B6)."""
        if self.raw_text or prompt is None or prompt == "":
            return encode_raw_text(self.tokenizer, completion, self.max_length)
        enc: Encoded = encode_example(self.tokenizer, with_principles(prompt, self.principles), completion,
                                      max_length=self.max_length, template=self.template)
        return enc.input_ids

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """`[N, num_labels]` scores with gradients (for training)."""
        return pooled_scores(self.model, input_ids, attention_mask)

    @torch.no_grad()
    def score_matrix(self, prompts: Sequence[Prompt | None], completions: Sequence[str]) -> Tensor:
        seqs = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        # Sort by length so each batch pads little; results go back to input order.
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = torch.zeros(len(seqs), len(self.attributes))
        device = next(self.model.parameters()).device
        starts = range(0, len(order), self.batch_size)
        for s in tqdm(starts, desc=f"scoring with {self.name}", disable=not self.progress, leave=False):
            idx = order[s:s + self.batch_size]
            ids, att = _pad([seqs[i] for i in idx], self.tokenizer.pad_token_id)
            out[idx] = self.forward(ids.to(device), att.to(device)).cpu()
        return out

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        prompts, _ = unpack_prompts(prompts, context)
        if not completions:
            return RewardResult([], [])
        was_training = self.model.training
        self.model.eval()
        try:
            mat = self.score_matrix(prompts, completions)
        finally:
            self.model.train(was_training)
        w = torch.tensor(self.weights)
        scores = (mat @ w).tolist()
        attrs = ([dict(zip(self.attributes, row, strict=True)) for row in mat.tolist()]
                 if len(self.attributes) > 1 else None)
        return RewardResult(scores, attrs)


class ImplicitDPOReward:
    """r(x, y) = β·(S_θ(y) − S_ref(y)), S the summed completion log-prob (+EOS) under the chat template.
    `reference=None` is the reference-free variant (β·S_θ); `length_normalize=True` uses mean token log-probs
    (RewardBench's `ref_free_norm="avg"`)."""

    def __init__(self, policy: nn.Module, reference: nn.Module | None, tokenizer: PreTrainedTokenizerBase,
                 beta: float = 0.1, batch_size: int = 8, max_length: int = 1024, length_normalize: bool = False,
                 template: Template = "auto", name: str = "implicit_dpo") -> None:
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        self.beta, self.batch_size, self.max_length = beta, batch_size, max_length
        self.length_normalize, self.template, self.name = length_normalize, template, name

    @torch.no_grad()
    def _logps(self, model: nn.Module, encoded: list[Encoded]) -> Tensor:
        from alignkit.train.batching import pad_sequences
        from alignkit.train.logps import completion_logps

        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out = []
        try:
            for s in range(0, len(encoded), self.batch_size):
                ids, att, lab = pad_sequences(encoded[s:s + self.batch_size], self.tokenizer.pad_token_id)
                r = completion_logps(model, ids.to(device), att.to(device), lab.to(device))
                out.append(r.sums / r.counts.clamp(min=1) if self.length_normalize else r.sums)
        finally:
            model.train(was_training)
        return torch.cat(out).cpu()

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        prompts, _ = unpack_prompts(prompts, context)
        if not completions:
            return RewardResult([], [])
        enc = [encode_example(self.tokenizer, p, c, max_length=self.max_length, template=self.template)
               for p, c in zip(prompts, completions, strict=True)]
        pol = self._logps(self.policy, enc)
        ref = self._logps(self.reference, enc) if self.reference is not None else torch.zeros_like(pol)
        scores = (self.beta * (pol - ref)).tolist()
        attrs = [{"policy_logp": float(a), "reference_logp": float(b)} for a, b in zip(pol, ref, strict=True)]
        return RewardResult(scores, attrs)


def implicit_dpo_reward(policy: nn.Module, reference: nn.Module | None, tokenizer: PreTrainedTokenizerBase,
                        beta: float = 0.1, **kwargs: Any) -> ImplicitDPOReward:
    return ImplicitDPOReward(policy, reference, tokenizer, beta, **kwargs)
