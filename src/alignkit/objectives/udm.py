"""Underlying Distribution Matching for BCO (spec §2.2): density ratio w(x) = p₊(x)/p₋(x) between the prompts
of desirable and undesirable examples, estimated with a class-balanced logistic regression on frozen prompt
embeddings (TRL uses scikit-learn's `LogisticRegression(class_weight="balanced")` on the raw embeddings; this is
a small torch equivalent with the same objective: L2 penalty on the weights, not the bias, C = 1, no feature
scaling unless asked for).

Use: `clf = fit_udm_classifier(emb_desirable, emb_undesirable)`, then put `clf.density_ratio(emb)` of every
undesirable example's prompt into `LogProbs.extras["udm_weight"]` (desirable examples get weight 1, and BCO
ignores their entry). `mean_pooled_embeddings` gives the frozen-encoder embeddings (mean of the last hidden state
over prompt tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alignkit.errors import ConfigError


@dataclass
class UDMClassifier:
    """p̂(desirable | x) = σ(⟨weight, (x − mean)/scale⟩ + bias), with the ratio clipped to [min_ratio, max_ratio].

    mean = 0 and scale = 1 unless the classifier was fitted with `standardize=True`."""

    weight: Tensor
    bias: Tensor
    mean: Tensor
    scale: Tensor
    min_ratio: float = 0.5
    max_ratio: float = 10.0

    def prob_desirable(self, emb: Tensor) -> Tensor:
        x = (emb.float() - self.mean) / self.scale
        return torch.sigmoid(x @ self.weight + self.bias)

    def density_ratio(self, emb: Tensor) -> Tensor:
        """w(x) = clip(p̂/(1 − p̂ + 1e-8), min_ratio, max_ratio), `[N]`; detached."""
        with torch.no_grad():
            p = self.prob_desirable(emb)
            return (p / (1 - p + 1e-8)).clamp(self.min_ratio, self.max_ratio)

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors for safetensors; ratios clip bounds ride along as 0-d tensors."""
        return {"weight": self.weight, "bias": self.bias, "mean": self.mean, "scale": self.scale,
                "min_ratio": torch.tensor(self.min_ratio), "max_ratio": torch.tensor(self.max_ratio)}

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor]) -> UDMClassifier:
        return cls(sd["weight"], sd["bias"], sd["mean"], sd["scale"], float(sd["min_ratio"]), float(sd["max_ratio"]))


def density_ratio_from_prob(p: Tensor | float, min_ratio: float = 0.5, max_ratio: float = 10.0) -> Tensor:
    """The clipped ratio for a given classifier output p̂ (spec: p̂ = 0.6 → 1.5)."""
    p = torch.as_tensor(p, dtype=torch.float32)
    return (p / (1 - p + 1e-8)).clamp(min_ratio, max_ratio)


def fit_udm_classifier(desirable: Tensor, undesirable: Tensor, *, c: float = 1.0, max_iter: int = 200,
                       min_ratio: float = 0.5, max_ratio: float = 10.0, standardize: bool = False) -> UDMClassifier:
    """Fit a class-balanced, L2-regularised logistic regression (label 1 = desirable) with L-BFGS.

    Objective (scikit-learn's convention): ½‖w‖² + C·Σ_i c_i·BCE_i, with balanced class weights
    c_i = n / (2·n_class(i)) and an unpenalised bias. Like TRL's BCO (which fits scikit-learn on the raw
    embeddings) the features are used as they are: the L2 penalty is scale dependent, so standardising first
    fits a different classifier. `standardize=True` z-scores each feature first (better conditioned when the
    embedding dimensions differ wildly in scale) at the price of TRL parity.
    TRL samples `prompt_sample_size` = 1024 prompts per class; pass whatever sample you like here.
    """
    if desirable.dim() != 2 or undesirable.dim() != 2 or desirable.shape[1] != undesirable.shape[1]:
        raise ConfigError(f"UDM: embeddings must be [N, D] with the same D, got {tuple(desirable.shape)} and "
                          f"{tuple(undesirable.shape)}")
    if len(desirable) == 0 or len(undesirable) == 0:
        raise ConfigError("UDM: need at least one desirable and one undesirable prompt to fit the classifier")
    x = torch.cat([desirable, undesirable]).float()
    y = torch.cat([torch.ones(len(desirable)), torch.zeros(len(undesirable))])
    n = len(y)
    cw = torch.where(y > 0, n / (2.0 * len(desirable)), n / (2.0 * len(undesirable)))
    if standardize:
        mean, scale = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
    else:
        mean, scale = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
    x = (x - mean) / scale
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, weight=cw, reduction="sum")
        loss = 0.5 * (w * w).sum() + c * bce
        loss.backward()
        return loss

    opt.step(closure)
    return UDMClassifier(w.detach(), b.detach(), mean, scale, min_ratio, max_ratio)


@torch.no_grad()
def mean_pooled_embeddings(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16,
                           max_length: int = 512) -> Tensor:
    """Mean of the last hidden state over the tokens of each text (the frozen prompt encoder of UDM), `[N, H]`."""
    from tqdm.auto import tqdm

    out: list[Tensor] = []
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for start in tqdm(range(0, len(texts), batch_size), desc="embedding prompts", disable=len(texts) <= batch_size):
            enc = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                            truncation=True, max_length=max_length)
            enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
            # explicit positions keep left- and right-padded rows identical to unpadded ones
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            hidden = model(**enc, position_ids=positions, output_hidden_states=True).hidden_states[-1].float()
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * m).sum(1) / m.sum(1).clamp(min=1)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)
