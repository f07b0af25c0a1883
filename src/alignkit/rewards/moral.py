"""Moral direction (Schramowski et al., Nature Machine Intelligence 2022, arXiv 2103.11790; code
ml-research/MoRT_NMI `mort/pca.py`, `funcs_mcm.py`): the first principal component of frame-averaged sentence
embeddings of atomic actions separates dos from don'ts; projecting a text on it gives a normativity score in
[−1, 1]. Spec: ../shared/spec/wave2_selfalign_merge.md §6.

* e(a) = mean over question frames q of φ(q(a)) ("Should I {}?" …; `resources/moral/actions.json`).
* PCA on {e(a)}: mean μ, PC1 v (sign fixed as sklearn's `svd_flip`: the largest-|·| entry of U's first column
  positive). The score's sign is chosen so the positive verbs project above 0 on average (the spec's
  equivalent of MoRT's "cluster without 'kill'" rule [design]).
* m(t) = clip(sign·⟨φ̄(t) − μ, v⟩ / Z, −1, 1) with Z = max_a |⟨e(a) − μ, v⟩| over the fit set, so fit-set scores
  lie in [−1, 1] with an extreme at ±1 (MoRT fixes Z = 8.946814 for bert-large-nli-mean-tokens; whether that is
  the same maximum is [uncertain]).

Uses: `MoralScore` is a Reward (`moral:ENCODER_DIR`, any sentence encoder as a local HF directory, mean-pooled;
`moral:MODEL,lm`, implied for the built-in `smollm2-135m-instruct` / `tiny-random`, embeds with a causal LM's
mean-pooled, L2-normalised last hidden states instead, as Guide-Align's `embedder=policy`, when no sentence
encoder ships); `decode.moral.moral_steering_vector` builds the direction in the policy's own hidden space as a
steer vector.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from alignkit.errors import ConfigError, DataError
from alignkit.rewards.base import RewardResult, unpack_prompts

Encoder = Callable[[Sequence[str]], np.ndarray]


def moral_actions() -> dict[str, list[str]]:
    """The shipped fit set and frames (ordered lists; MoRT keeps them in a set, whose order is not reproducible)."""
    data = json.loads(resources.files("alignkit.resources").joinpath("moral/actions.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@dataclass
class MoralDirection:
    mean: np.ndarray
    direction: np.ndarray  # PC1, unit
    sign: float
    scale: float  # Z
    explained_variance_ratio: float

    def raw(self, embeddings: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(embeddings) - self.mean) @ self.direction

    def score(self, embeddings: np.ndarray, clip: bool = True) -> np.ndarray:
        s = self.sign * self.raw(embeddings) / self.scale
        return np.clip(s, -1.0, 1.0) if clip else s


def fit_moral_direction(embeddings: Mapping[str, Sequence[float]], positive: Sequence[str]) -> MoralDirection:
    """PC1 of the action embeddings (already frame-averaged), sign from the `positive` actions, Z = max |proj|."""
    names = list(embeddings)
    if len(names) < 2:
        raise DataError("the moral direction needs at least two fitted actions")
    pos = [n for n in positive if n in embeddings]
    if not pos:
        raise DataError("none of the positive actions is among the fitted embeddings; the sign is undefined")
    X = np.asarray([embeddings[n] for n in names], dtype=np.float64)
    mu = X.mean(0)
    U, S, Vt = np.linalg.svd(X - mu, full_matrices=False)
    v = Vt[0] * np.sign(U[np.argmax(np.abs(U[:, 0])), 0])  # sklearn svd_flip (u-based)
    proj = (X - mu) @ v
    z = float(np.max(np.abs(proj)))
    if z == 0:
        raise DataError("all action embeddings are identical; no direction")
    pos_mean = float(np.mean([proj[names.index(n)] for n in pos]))
    var = S ** 2
    return MoralDirection(mu, v, 1.0 if pos_mean >= 0 else -1.0, z, float(var[0] / var.sum()))


def frame_average(encode: Encoder, actions: Sequence[str], frames: Sequence[str]) -> np.ndarray:
    """e(a) = (1/|frames|) Σ_q φ(q(a)), one row per action."""
    texts = [f.format(a) for a in actions for f in frames]
    emb = np.asarray(encode(texts), dtype=np.float64)
    return emb.reshape(len(actions), len(frames), -1).mean(1)


def causal_lm_encoder(model: Any, tokenizer: Any) -> Encoder:
    """φ = a causal LM's mean-pooled, L2-normalised last hidden states (`decode.guide.hidden_state_embedder`, the
    Guide-Align `embedder=policy` route): the policy can be its own encoder when no sentence encoder ships."""
    from alignkit.decode.guide import hidden_state_embedder

    embed = hidden_state_embedder(model.eval(), tokenizer)

    def encode(texts: Sequence[str]) -> np.ndarray:
        return embed(texts).numpy()

    return encode


def hf_mean_pool_encoder(path: str, batch_size: int = 32) -> Encoder:
    """φ = mean-pooled last hidden states of a local HF encoder directory (SBERT's mean-token pooling)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from alignkit.models import resolve_local

    local = str(resolve_local(path))
    tok = AutoTokenizer.from_pretrained(local)
    model = AutoModel.from_pretrained(local).eval()

    @torch.inference_mode()
    def encode(texts: Sequence[str]) -> np.ndarray:
        rows = []
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i:i + batch_size]), padding=True, truncation=True, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            rows.append(((h * m).sum(1) / m.sum(1).clamp(min=1)).float().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 1))

    return encode


class MoralScore:
    """Reward: m(completion) (raw text, no frames, as MoRT's generation filter), or m(prompt + completion) with
    `use_prompt`. Fits the direction once on the shipped fit set with the given encoder."""

    def __init__(self, encode: Encoder, *, use_prompt: bool = False, qa_template: bool = False,
                 name: str = "moral") -> None:
        acts = moral_actions()
        self.encode, self.use_prompt, self.qa_template, self.name = encode, use_prompt, qa_template, name
        self.frames = acts["frames"]
        names = acts["positive"] + acts["negative"] + acts["neutral"]
        emb = frame_average(encode, names, self.frames)
        self.direction = fit_moral_direction(dict(zip(names, emb, strict=True)), acts["positive"])

    def __call__(self, prompts: Sequence[Any], completions: Sequence[str], **context: Any) -> RewardResult:
        plain, _ = unpack_prompts(prompts, context)
        texts = [(f"{p} {c}" if self.use_prompt and isinstance(p, str) else c) for p, c in
                 zip(plain, completions, strict=True)]
        emb = frame_average(self.encode, texts, self.frames) if self.qa_template else np.asarray(self.encode(texts))
        return RewardResult([float(x) for x in self.direction.score(emb)])


def moral_reward(arg: str) -> MoralScore:
    """`moral:ENCODER_DIR[,prompt][,frames][,lm]`; `lm` (implied for the built-in models) encodes with a causal
    LM's hidden states (`causal_lm_encoder`) instead of a sentence encoder."""
    from alignkit.models import EMBEDDED, TINY

    parts = [p.strip() for p in arg.split(",") if p.strip()]
    if not parts:
        raise ConfigError("reward spec 'moral:ENCODER_DIR' needs a local sentence-encoder directory")
    flags = set(parts[1:])
    unknown = flags - {"prompt", "frames", "lm"}
    if unknown:
        raise ConfigError(f"moral reward options are 'prompt', 'frames' and 'lm', got {sorted(unknown)}")
    if "lm" in flags or parts[0] == EMBEDDED or parts[0].startswith(TINY):
        from alignkit.models import load_model

        encode = causal_lm_encoder(*load_model(parts[0]))
    else:
        encode = hf_mean_pool_encoder(parts[0])
    return MoralScore(encode, use_prompt="prompt" in flags, qa_template="frames" in flags, name=f"moral:{arg}")
