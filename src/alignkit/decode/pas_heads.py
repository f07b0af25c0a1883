"""PAS on a live model (spec ../shared/spec/wave2_selfalign_merge.md §4; code zhu-minjun/PAlign `main.py::
process_pas`, `PAlign/pas.py`): per-head activations just before `o_proj` (the patched models' `head_out`), head
ranking by logistic probes, the selected heads' mass-mean directions (`decode.pas.head_direction`), steering as a
forward pre-hook on `o_proj` adding δ_{ℓ,h} = α·σ_h·v_h (the spec's implementation note: any HF decoder with a
per-layer `o_proj`, GQA included, since `head_out` concatenates the *query* heads), and the α search on held-out
*train* items (`decode.pas.search_alpha`), never on the reported test items.

The logistic probe is a small L2-regularised logistic regression fitted with L-BFGS in torch, the objective of
scikit-learn's `LogisticRegression(C=1.0)` (scikit-learn is not installed here); head score = mean(validation
accuracy, training accuracy) on a seeded 60/40 split (the code's split is unseeded).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignkit.decode.pas import head_direction
from alignkit.decode.steer import decoder_layers
from alignkit.errors import ConfigError, DataError, ModelError


def o_proj_modules(model: Any) -> list[torch.nn.Module]:
    """Each decoder block's attention output projection (`self_attn.o_proj`)."""
    mods = []
    for i, block in enumerate(decoder_layers(model)):
        attn = getattr(block, "self_attn", None)
        proj = getattr(attn, "o_proj", None)
        if proj is None:
            raise ModelError(f"decoder block {i} has no self_attn.o_proj; PAS needs a Llama/Mistral/Qwen-style model")
        mods.append(proj)
    return mods


def head_shape(model: Any) -> tuple[int, int, int]:
    """(layers, query heads, head dim)."""
    cfg = model.config
    heads = int(cfg.num_attention_heads)
    dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return len(o_proj_modules(model)), heads, dim


@torch.inference_mode()
def capture_heads(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Activations entering every `o_proj` at the last token of each text: shape (n, layers, heads, head_dim)."""
    n_layers, heads, dim = head_shape(model)
    seen: dict[int, torch.Tensor] = {}

    def reader(ly: int):  # noqa: ANN202
        def read(module: Any, args: Any) -> None:
            seen[ly] = args[0][:, -1].float().cpu()
        return read

    handles = [m.register_forward_pre_hook(reader(i)) for i, m in enumerate(o_proj_modules(model))]
    device = next(model.parameters()).device
    out = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts[start:start + batch_size]]
            width = max(len(c) for c in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, c in enumerate(chunk):  # left padding: the last position is every row's last token
                ids[r, width - len(c):] = torch.tensor(c)
                mask[r, width - len(c):] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                  use_cache=False)
            out.append(torch.stack([seen[i] for i in range(n_layers)], 1).reshape(len(chunk), n_layers, heads, dim))
    finally:
        for h in handles:
            h.remove()
    return torch.cat(out).numpy().astype(np.float64)


def fit_logistic(X: np.ndarray, y: np.ndarray, C: float = 1.0, max_iter: int = 1000) -> tuple[np.ndarray, float]:
    """argmin ½‖w‖² + C·Σ log(1 + exp(−s_i(w·x_i + b))), s = ±1 (scikit-learn's L2 objective; b unpenalised)."""
    Xt, yt = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64) * 2 - 1
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * (w * w).sum() + C * torch.nn.functional.softplus(-yt * (Xt @ w + b)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def _accuracy(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    return float(((X @ w + b > 0).astype(int) == y).mean())


def labelled(acts_a: np.ndarray, acts_e: np.ndarray, answers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Stack the A/E activations of the items the user answered (not 0 or 3): label 1 = what the user would say."""
    X, y = [], []
    for a, e, ans in zip(acts_a, acts_e, answers, strict=True):
        if ans in (0, 3):
            continue
        X += [a, e]
        y += [int(ans > 3), int(ans <= 3)]
    if not X:
        raise DataError("no labelled items (every answer is 0 or 3)")
    return np.asarray(X), np.asarray(y)


def rank_heads(acts_a: np.ndarray, acts_e: np.ndarray, answers: Sequence[int], k: int = 24, seed: int = 0
               ) -> list[tuple[int, int, float]]:
    """Top-k (layer, head, score) by score = mean(val acc, train acc) of a probe per head on a seeded 60/40 split
    (ties keep the (layer, head) order)."""
    X, y = labelled(acts_a, acts_e, answers)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(round(0.6 * len(y)))
    tr, va = order[:cut], order[cut:]
    if len(set(y[tr])) < 2:
        raise DataError("the probe's training split holds one class only; give more labelled items")
    scores = []
    for ly in range(X.shape[1]):
        for h in range(X.shape[2]):
            w, b = fit_logistic(X[tr, ly, h], y[tr])
            val = _accuracy(X[va, ly, h], y[va], w, b) if len(va) else 0.0
            scores.append((ly, h, (val + _accuracy(X[tr, ly, h], y[tr], w, b)) / 2))
    return sorted(scores, key=lambda s: -s[2])[:k]


@dataclass
class PASArtifact:
    """Selected heads with unit directions v_h and σ_h, and the chosen intensity α."""

    heads: list[tuple[int, int]]
    directions: np.ndarray  # (k, head_dim)
    sigmas: np.ndarray  # (k,)
    alpha: float = 0.0

    def deltas(self, alpha: float, n_heads: int, head_dim: int) -> dict[int, torch.Tensor]:
        """{layer: δ over the concatenated heads (n_heads·head_dim,)}; zero for unselected heads."""
        out: dict[int, torch.Tensor] = {}
        for (ly, h), v, s in zip(self.heads, self.directions, self.sigmas, strict=True):
            full = out.setdefault(ly, torch.zeros(n_heads * head_dim, dtype=torch.float64))
            full[h * head_dim:(h + 1) * head_dim] += alpha * float(s) * torch.as_tensor(v, dtype=torch.float64)
        return out

    def save(self, path: str | Path, meta: dict[str, str] | None = None) -> Path:
        from safetensors.torch import save_file

        tensors = {"heads": torch.tensor(self.heads, dtype=torch.int64).reshape(-1, 2),
                   "directions": torch.as_tensor(self.directions, dtype=torch.float32),
                   "sigmas": torch.as_tensor(self.sigmas, dtype=torch.float32)}
        save_file(tensors, str(path), metadata={"alpha": repr(float(self.alpha)), "method": "pas", **(meta or {})})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> PASArtifact:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("method") != "pas":
                raise ConfigError(f"{path} is not a PAS artefact (metadata method={meta.get('method')!r})")
            heads = [tuple(int(x) for x in row) for row in f.get_tensor("heads").tolist()]
            return cls(heads=heads, directions=f.get_tensor("directions").double().numpy(),
                       sigmas=f.get_tensor("sigmas").double().numpy(), alpha=float(meta["alpha"]))


def build_artifact(acts_a: np.ndarray, acts_e: np.ndarray, answers: Sequence[int], k: int = 24, seed: int = 0
                   ) -> PASArtifact:
    """Rank the heads, then take each selected head's mass-mean direction and σ (spec §4 steps 3–4)."""
    top = rank_heads(acts_a, acts_e, answers, k, seed)
    dirs, sigmas = [], []
    for ly, h, _ in top:
        v, s = head_direction(acts_a[:, ly, h], acts_e[:, ly, h], answers)
        dirs.append(v)
        sigmas.append(s)
    return PASArtifact(heads=[(ly, h) for ly, h, _ in top], directions=np.asarray(dirs), sigmas=np.asarray(sigmas))


@contextlib.contextmanager
def pas_steering(model: Any, art: PASArtifact, alpha: float | None = None) -> Iterator[None]:
    """Add δ_ℓ to the input of each steered layer's `o_proj` at every position (α defaults to the artefact's)."""
    _, heads, dim = head_shape(model)
    mods = o_proj_modules(model)
    deltas = art.deltas(art.alpha if alpha is None else alpha, heads, dim)

    def hook(delta: torch.Tensor):  # noqa: ANN202
        def add(module: Any, args: Any) -> Any:
            x = args[0]
            return (x + delta.to(x.dtype).to(x.device), *args[1:])
        return add

    handles = [mods[ly].register_forward_pre_hook(hook(d)) for ly, d in deltas.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def pas_bias(model: Any, art: PASArtifact, alpha: float | None = None) -> Iterator[None]:
    """The code's route: `o_proj.bias = W_o · concat δ` (restored on exit); equal to `pas_steering`."""
    _, heads, dim = head_shape(model)
    mods = o_proj_modules(model)
    saved = {}
    try:
        for ly, d in art.deltas(art.alpha if alpha is None else alpha, heads, dim).items():
            m = mods[ly]
            saved[ly] = m.bias
            extra = (m.weight.double() @ d.to(m.weight.device)).to(m.weight.dtype)
            m.bias = torch.nn.Parameter(extra if m.bias is None else m.bias.detach() + extra, requires_grad=False)
        yield
    finally:
        for ly, b in saved.items():
            mods[ly].bias = b
