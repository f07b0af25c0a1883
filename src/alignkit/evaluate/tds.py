"""Token-distribution shift (TDS) between a base and an aligned model (spec testtime_eval.md A5.2; Lin et al. 2024,
"The Unlocking Spell on Base LLMs", ICLR 2024; code Re-Align/AlignTDS).

Input definition. For one aligned answer o = (o_1..o_L) (greedy, from the aligned model with its own template):
* `ranks[t]` = η_t, the rank of o_t in the *base* model's next-token distribution given the base context + o_<t
  (1 = the base argmax; rank = 1 + number of vocabulary tokens with a strictly larger base logit);
* `base_probs[t]` = P_base(o_t | ·);
* `kl[t]` = KL(P_align ‖ P_base) at position t (aligned context for P_align, base context for P_base);
* `tokens[t]` = the token string (for the most-frequent-shifted-tokens table).
Categories: unshifted η = 1; marginal 1 < η ≤ 3; shifted η > 3. (The released code keeps only the top-30 of each
distribution, so any η ≥ 30 is the same there; categories do not depend on that.) Fractions are pooled over all
tokens; their CI resamples answers (cluster bootstrap), since tokens of one answer are not independent.

`token_ranks_from_models` computes the inputs from two HF causal LMs sharing a tokenizer, with one teacher-forced
forward pass per model and answer (identical logits to the released token-by-token loop, much faster); logits are
computed only at answer positions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit.errors import DataError, ModelError
from alignkit.evaluate.stats import Estimate, ratio_ci

# AlignTDS `--enable_template` context for the base model (no URIAL examples).
BASE_TEMPLATE = "# Query: \n ```{query}``` \n\n \n# Answer: \n ```"
CATEGORIES: tuple[str, ...] = ("unshifted", "marginal", "shifted")


@dataclass
class TokenShiftData:
    """Per-answer, per-position TDS inputs (see module docstring); optional fields may be None."""

    ranks: list[np.ndarray]
    base_probs: list[np.ndarray] | None = None
    kl: list[np.ndarray] | None = None
    tokens: list[list[str]] | None = None
    answers: list[str] = field(default_factory=list)


def _rank_arrays(ranks: Sequence[Sequence[int]] | TokenShiftData) -> list[np.ndarray]:
    seqs = ranks.ranks if isinstance(ranks, TokenShiftData) else ranks
    out = []
    for i, r in enumerate(seqs):
        a = np.asarray(r)
        if a.ndim != 1:
            raise DataError(f"ranks[{i}]: expected one rank per position (1-D); got shape {a.shape}")
        if a.size and (not np.issubdtype(a.dtype, np.number) or (a < 1).any() or (a != np.round(a)).any()):
            raise DataError(f"ranks[{i}]: ranks are integers >= 1 (1 = the base model's top token)")
        out.append(a.astype(np.int64))
    if not out or sum(a.size for a in out) == 0:
        raise DataError("no token ranks given")
    return out


def tds_category(rank: int | np.ndarray) -> np.ndarray:
    """0 unshifted (η=1), 1 marginal (η∈{2,3}), 2 shifted (η>3)."""
    r = np.asarray(rank)
    return np.where(r <= 1, 0, np.where(r <= 3, 1, 2))


@dataclass
class TDSResult:
    unshifted: Estimate
    marginal: Estimate
    shifted: Estimate
    n_tokens: int
    n_answers: int

    def as_dict(self) -> dict[str, Any]:
        return {c: getattr(self, c).as_dict() for c in CATEGORIES} | {"n_tokens": self.n_tokens,
                                                                        "n_answers": self.n_answers}


def tds_fractions(ranks: Sequence[Sequence[int]] | TokenShiftData, *, seed: int = 0,
                  n_resamples: int = 2000) -> TDSResult:
    """Fractions of unshifted / marginal / shifted tokens, pooled over answers, with cluster-bootstrap CIs."""
    arrays = _rank_arrays(ranks)
    cats = [tds_category(a) for a in arrays]
    lengths = np.array([a.size for a in arrays], dtype=float)
    kw = {"seed": seed, "n_resamples": n_resamples}
    ests = {name: ratio_ci([float((c == k).sum()) for c in cats], lengths, **kw)
            for k, name in enumerate(CATEGORIES)}
    return TDSResult(**ests, n_tokens=int(lengths.sum()), n_answers=len(arrays))


def position_curves(data: TokenShiftData, max_positions: int | None = None) -> dict[str, np.ndarray]:
    """Per-position means over answers: `mean_rank`, `base_prob`, `kl` (when present), and `count` of answers long
    enough to have that position."""
    length = max(a.size for a in data.ranks)
    if max_positions is not None:
        length = min(length, max_positions)
    out: dict[str, np.ndarray] = {}
    fields = {"mean_rank": data.ranks, "base_prob": data.base_probs, "kl": data.kl}
    for name, seqs in fields.items():
        if seqs is None:
            continue
        total, count = np.zeros(length), np.zeros(length)
        for a in seqs:
            a = np.asarray(a, dtype=float)[:length]
            total[: a.size] += a
            count[: a.size] += 1
        with np.errstate(invalid="ignore"):
            out[name] = total / count
        out["count"] = count
    return out


def top_shifted_tokens(data: TokenShiftData, k: int = 20) -> list[tuple[str, int]]:
    """The k most frequent tokens in the shifted category (η > 3)."""
    if data.tokens is None:
        raise DataError("top_shifted_tokens needs the token strings (TokenShiftData.tokens)")
    c: Counter[str] = Counter()
    for ranks, toks in zip(data.ranks, data.tokens, strict=True):
        c.update(t for t, r in zip(toks, ranks, strict=True) if r > 3)
    return c.most_common(k)


def _answer_logits(model: Any, context: list[int], answer: list[int]) -> Any:
    import torch

    ids = torch.tensor([context + answer], device=model.device)
    with torch.no_grad():
        try:
            logits = model(input_ids=ids, logits_to_keep=len(answer) + 1).logits
        except TypeError:  # models without `logits_to_keep`
            logits = model(input_ids=ids).logits
    # Position p predicts token p+1, so the answer tokens are predicted by the L positions before the last.
    return logits[0, -(len(answer) + 1):-1].float()


def token_ranks_from_models(base_model: Any, aligned_model: Any, tokenizer: Any, queries: Sequence[str],
                            answers: Sequence[str] | None = None, *, base_template: str = BASE_TEMPLATE,
                            max_new_tokens: int = 128, base_tokenizer: Any = None,
                            progress: bool = True) -> TokenShiftData:
    """Compute TDS inputs for each query from two HF causal LMs sharing a tokenizer.

    answers: the aligned model's answers; when None they are generated greedily by `aligned_model` with the
        tokenizer's chat template (the paper's setting). Aligned context = chat template with generation prompt;
        base context = `base_template.format(query=q)`.
    base_tokenizer: if given, it must have the same vocabulary as `tokenizer` (rank comparisons across different
        tokenizers are meaningless); raises ModelError otherwise.
    """
    import torch
    from tqdm.auto import tqdm

    if base_tokenizer is not None and base_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ModelError("TDS needs the base and aligned models to share a tokenizer; their vocabularies differ")
    if answers is not None and len(answers) != len(queries):
        raise DataError(f"{len(queries)} queries but {len(answers)} answers")
    stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    data = TokenShiftData(ranks=[], base_probs=[], kl=[], tokens=[], answers=[])
    for i, q in enumerate(tqdm(queries, desc="token shift", disable=not progress)):
        aligned_ctx = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                    tokenize=True)
        if isinstance(aligned_ctx, dict) or hasattr(aligned_ctx, "input_ids"):
            aligned_ctx = aligned_ctx["input_ids"]
        aligned_ctx = list(aligned_ctx)
        if answers is None:
            with torch.no_grad():
                out = aligned_model.generate(torch.tensor([aligned_ctx], device=aligned_model.device),
                                             attention_mask=torch.ones(1, len(aligned_ctx), dtype=torch.long,
                                                                       device=aligned_model.device),
                                             do_sample=False, max_new_tokens=max_new_tokens,
                                             pad_token_id=tokenizer.pad_token_id)
            answer = out[0, len(aligned_ctx):].tolist()
        else:
            answer = tokenizer(answers[i], add_special_tokens=False)["input_ids"]
        while answer and answer[-1] in stop_ids:
            answer = answer[:-1]
        if not answer:
            raise DataError(f"query {i}: the aligned answer is empty; TDS needs at least one answer token")
        base_ctx = tokenizer(base_template.format(query=q), add_special_tokens=False)["input_ids"]
        lb = _answer_logits(base_model, base_ctx, answer)
        la = _answer_logits(aligned_model, aligned_ctx, answer)
        tgt = torch.tensor(answer, device=lb.device)
        chosen = lb.gather(1, tgt[:, None])
        ranks = (lb > chosen).sum(dim=1) + 1
        logp_b = torch.log_softmax(lb, dim=-1)
        logp_a = torch.log_softmax(la.to(lb.device), dim=-1)
        kl = (logp_a.exp() * (logp_a - logp_b)).sum(dim=-1)
        data.ranks.append(ranks.cpu().numpy())
        data.base_probs.append(logp_b.gather(1, tgt[:, None])[:, 0].exp().cpu().numpy())  # type: ignore[union-attr]
        data.kl.append(kl.clamp_min(0.0).cpu().numpy())  # type: ignore[union-attr]
        data.tokens.append(tokenizer.convert_ids_to_tokens(answer))  # type: ignore[union-attr]
        data.answers.append(tokenizer.decode(answer))
    return data
