"""Reference-based metric rewards: BLEU (as BLEUBERI uses it) and chrF, with several references per prompt.

BLEUBERI (Chang et al. 2025, "BLEUBERI: BLEU is a surprisingly effective reward for instruction following";
spec objectives.md §9.1) rewards a completion y with BLEU(y; refs) from HF `evaluate`'s `bleu` with `smooth=True`:

* 13a tokenisation (sacrebleu's `Tokenizer13a`, then whitespace split), max order 4;
* add-one smoothing on **every** order: p_n = (m_n + 1) / (c_n + 1), m_n clipped against the max count over refs;
* BLEU = exp(¼ Σ_n log p_n) · BP, BP = 1 if c/r > 1 else exp(1 − r/c), r = length of the **shortest** reference;
* an empty completion scores 0; if the completion has `<answer>…</answer>`, only that span is scored;
* a prompt without references scores 0 (counted in `info["without_references"]`).

sacrebleu has no identical setting: `smooth_method="add-k", smooth_value=1` smooths orders n > 1 only (Lin & Och
2004) and takes the *closest* reference length. On the spec example ("the cat sat on the mat" vs "the cat is on the
mat") BLEUBERI gives 0.4889230 (p1 = 6/7) and sacrebleu add-k gives 0.4854918 (p1 = 5/6). So `method="bleuberi"`
(default) counts n-grams itself on sacrebleu's tokens, and `method="sacrebleu"` calls sacrebleu's own
`sentence_bleu` / `corpus_bleu` (any `smooth_method`), matching its numbers exactly. Scores are in [0, 1].
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from alignkit.data.records import Prompt
from alignkit.errors import RewardError
from alignkit.rewards.base import RewardResult, context_column, unpack_prompts

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str:
    """The `<answer>…</answer>` span if present (BLEUBERI), else the text itself."""
    m = ANSWER_RE.search(text)
    return m.group(1).strip() if m else text


def _tokenize(text: str) -> list[str]:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text).split()


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _bleuberi_stats(hyp: str, refs: Sequence[str], max_order: int) -> tuple[list[int], list[int], int, int]:
    h = _tokenize(hyp)
    rs = [_tokenize(r) for r in refs]
    matches, possible = [0] * max_order, [0] * max_order
    for n in range(1, max_order + 1):
        best: Counter[tuple[str, ...]] = Counter()
        for r in rs:
            best |= _ngrams(r, n)
        matches[n - 1] = sum((_ngrams(h, n) & best).values())
        possible[n - 1] = max(len(h) - n + 1, 0)
    return matches, possible, len(h), min(len(r) for r in rs)


def _bleuberi_from_stats(matches: Sequence[int], possible: Sequence[int], hyp_len: int, ref_len: int) -> float:
    if hyp_len == 0:
        return 0.0
    prec = [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible, strict=True)]
    geo = math.exp(sum(math.log(p) for p in prec) / len(prec))
    ratio = hyp_len / ref_len if ref_len > 0 else float("inf")
    bp = 1.0 if ratio > 1.0 else math.exp(1.0 - 1.0 / ratio)
    return geo * bp


def _clean_refs(refs: Any) -> list[str]:
    if refs is None:
        return []
    if isinstance(refs, str):
        refs = [refs]
    return [r for r in refs if isinstance(r, str) and r.strip()]


def sentence_bleu(hypothesis: str, references: Sequence[str], method: str = "bleuberi", max_order: int = 4,
                  smooth_method: str = "exp") -> float:
    """BLEU of one hypothesis in [0, 1]. `method="bleuberi"`: add-one on all orders, shortest-reference BP.
    `method="sacrebleu"`: `sacrebleu.sentence_bleu(..., smooth_method=smooth_method) / 100`."""
    refs = _clean_refs(references)
    if not isinstance(hypothesis, str) or not hypothesis.strip() or not refs:
        return 0.0
    if method == "bleuberi":
        return _bleuberi_from_stats(*_bleuberi_stats(hypothesis, refs, max_order))
    if method == "sacrebleu":
        import sacrebleu

        return sacrebleu.sentence_bleu(hypothesis, refs, smooth_method=smooth_method).score / 100.0
    raise RewardError(f"BLEU method must be 'bleuberi' or 'sacrebleu', got {method!r}")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], method: str = "bleuberi",
                max_order: int = 4, smooth_method: str = "exp") -> float:
    """Corpus BLEU in [0, 1]: statistics summed over examples before the geometric mean and BP."""
    if len(hypotheses) != len(references):
        raise RewardError(f"corpus_bleu: {len(hypotheses)} hypotheses but {len(references)} reference lists")
    refs = [_clean_refs(r) for r in references]
    if any(not r for r in refs):
        raise RewardError("corpus_bleu: every hypothesis needs at least one non-empty reference")
    if method == "sacrebleu":
        import sacrebleu

        k = max(len(r) for r in refs)
        streams = [[r[j] if j < len(r) else None for r in refs] for j in range(k)]
        return sacrebleu.corpus_bleu(list(hypotheses), streams, smooth_method=smooth_method).score / 100.0
    if method != "bleuberi":
        raise RewardError(f"BLEU method must be 'bleuberi' or 'sacrebleu', got {method!r}")
    m_tot, p_tot, h_tot, r_tot = [0] * max_order, [0] * max_order, 0, 0
    for h, r in zip(hypotheses, refs, strict=True):
        m, p, hl, rl = _bleuberi_stats(h or "", r, max_order)
        m_tot = [a + b for a, b in zip(m_tot, m, strict=True)]
        p_tot = [a + b for a, b in zip(p_tot, p, strict=True)]
        h_tot, r_tot = h_tot + hl, r_tot + rl
    return _bleuberi_from_stats(m_tot, p_tot, h_tot, r_tot)


def sentence_chrf(hypothesis: str, references: Sequence[str], char_order: int = 6, word_order: int = 0,
                  beta: int = 2) -> float:
    """chrF (word_order=2 gives chrF++) from sacrebleu, in [0, 1]; the best reference counts."""
    refs = _clean_refs(references)
    if not isinstance(hypothesis, str) or not hypothesis.strip() or not refs:
        return 0.0
    from sacrebleu.metrics import CHRF

    return CHRF(char_order=char_order, word_order=word_order, beta=beta).sentence_score(hypothesis, refs).score / 100


class ReferenceReward:
    """Score each completion against `context["references"][i]` (a list of strings, or one string) with a
    sentence-level metric. `answer_span=True` scores only an `<answer>…</answer>` span when present."""

    def __init__(self, metric: str = "bleu", answer_span: bool = True, name: str | None = None,
                 **metric_kwargs: Any) -> None:
        if metric not in ("bleu", "chrf"):
            raise RewardError(f"reference metric must be 'bleu' or 'chrf', got {metric!r}")
        self.metric, self.answer_span, self.metric_kwargs = metric, answer_span, metric_kwargs
        self.name = name or metric

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        prompts, context = unpack_prompts(prompts, context)
        refs = context_column(context, "references", len(completions), self.name, required=True)
        assert refs is not None
        fn = sentence_bleu if self.metric == "bleu" else sentence_chrf
        scores, attrs, missing, empty = [], [], 0, 0
        for c, r in zip(completions, refs, strict=True):
            clean = _clean_refs(r)
            missing += not clean
            text = c if isinstance(c, str) else ""
            if self.answer_span:
                text = extract_answer(text)
            empty += not text.strip()
            scores.append(fn(text, clean, **self.metric_kwargs) if clean else 0.0)
            attrs.append({"n_references": len(clean)})
        return RewardResult(scores, attrs, info={"without_references": missing, "empty_completions": empty})


def bleu_reward(method: str = "bleuberi", answer_span: bool = True) -> ReferenceReward:
    return ReferenceReward("bleu", answer_span=answer_span, method=method)


def chrf_reward(word_order: int = 0, answer_span: bool = True) -> ReferenceReward:
    return ReferenceReward("chrf", answer_span=answer_span, name="chrf" if word_order == 0 else "chrf++",
                           word_order=word_order)
