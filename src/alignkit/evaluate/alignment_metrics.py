"""Information-alignment metrics with a user-supplied alignment model: AlignScore (Zha et al., ACL 2023; code
yuh-zha/AlignScore `inference.py`) and CTC (Deng et al., EMNLP 2021; code tanyuqian/ctc-gen-eval). Spec:
../shared/spec/testtime_eval.md §B5. alignkit ships no alignment model: pass any callable, or a local HF
sequence-classification directory (`HFAlignment`).

AlignScore (`nli_sp` mode): split the context into sentences and group them into chunks of about `chunk_words`
words *by sentence count*, as the code does (n_chunk = words // 350 + 1, max(len(sents) // n_chunk, 1) sentences
per chunk; the paper says tokens, the code words: the code is reproduced for leaderboard parity); split the claim
into sentences; s_ij = f(chunk_i, sentence_j) = P(ALIGNED); AlignScore = mean_j max_i s_ij.

CTC: `align(a, b)` scores each token of `a` by how well context `b` supports it; `agg` is mean or sum, optionally
without English stopwords. Aspects: consistency = mean(align(y→x)); relevance = mean(align(y→x)) ×
mean_r mean(align(r→y)); preservation = 2ab/(a+b) of a = mean(align(y→x)), b = mean(align(x→y)); engagingness =
sum(align(y → fact + "\\n\\n\\n" + history)); groundedness = mean(align(y → fact)) (the paper; DialogScorer's
default is sum: `groundedness_agg="sum"` reproduces it). `EmbeddingAligner` is CTC's E estimator (BERTScore-style
max cosine of each token of a to the tokens of b) over any model's hidden states, so a causal LM at hand can be
the aligner; `ctc_score` evaluates one aspect over rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from alignkit.errors import ConfigError

AlignFn = Callable[[Sequence[tuple[str, str]]], Sequence[float]]  # [(context, claim)] -> P(aligned)
TokenAligner = Callable[[str, str], Sequence[tuple[str, float]]]  # (a, b) -> [(token of a, score)]

_SENT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")
# NLTK's English stopword list would be the reference; a compact list of function words stands in (no download).
STOPWORDS = frozenset("""a an the and or but if then else of at by for with about against between into through during
before after above below to from up down in out on off over under again further once here there when where why how all
any both each few more most other some such no nor not only own same so than too very s t can will just don should now i
me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it its
itself they them their theirs themselves what which who whom this that these those am is are was were be been being have
has had having do does did doing would could ought""".split())


def split_sentences(text: str) -> list[str]:
    """Sentence split at . ! ? followed by space (NLTK's punkt is the reference; close on plain prose)."""
    parts = [p.strip() for p in _SENT.split(text.strip()) if p.strip()]
    return parts or ([text.strip()] if text.strip() else [])


def chunk_context(context: str, chunk_words: int = 350) -> list[str]:
    """AlignScore's chunking: n_chunk = words // chunk_words + 1 chunks of max(len(sents) // n_chunk, 1)
    consecutive sentences (the last chunk takes the remainder as further chunks of that size)."""
    sents = split_sentences(context)
    if not sents:
        return [""]
    n_chunk = len(context.split()) // chunk_words + 1
    per = max(len(sents) // n_chunk, 1)
    return [" ".join(sents[i:i + per]) for i in range(0, len(sents), per)]


def align_score(context: str, claim: str, align: AlignFn, *, chunk_words: int = 350) -> dict[str, Any]:
    """AlignScore of one (context, claim): mean over claim sentences of the best chunk's P(aligned)."""
    chunks = chunk_context(context, chunk_words)
    sents = split_sentences(claim)
    if not sents:
        raise ConfigError("the claim is empty")
    pairs = [(c, s) for s in sents for c in chunks]
    probs = list(align(pairs))
    if len(probs) != len(pairs):
        raise ConfigError(f"the alignment function returned {len(probs)} scores for {len(pairs)} pairs")
    grid = [probs[j * len(chunks):(j + 1) * len(chunks)] for j in range(len(sents))]
    best = [max(row) for row in grid]
    return {"score": sum(best) / len(best), "per_sentence": best, "chunks": len(chunks), "calls": len(pairs)}


def align_scores(contexts: Sequence[str], claims: Sequence[str], align: AlignFn, **kw: Any) -> Any:
    """AlignScore over a data set with a bootstrap CI of the mean (`evaluate.stats.mean_ci`)."""
    from alignkit.evaluate.stats import mean_ci

    per = [align_score(c, y, align, **kw)["score"] for c, y in zip(contexts, claims, strict=True)]
    return mean_ci(per), per


class HFAlignment:
    """f(a, b) from a local HF sequence-classification directory: softmax over the logits, column `label_index`
    (AlignScore's 3-way head puts ALIGNED at 0). Pairs are encoded with `truncation="only_first"` (the context
    is cut first) at the model's max length."""

    def __init__(self, path: str, label_index: int = 0, batch_size: int = 16, max_length: int = 512) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from alignkit.models import resolve_local

        local = str(resolve_local(path))
        self.tokenizer = AutoTokenizer.from_pretrained(local)
        self.model = AutoModelForSequenceClassification.from_pretrained(local).eval()
        self.label_index, self.batch_size, self.max_length = label_index, batch_size, max_length

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        out: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(pairs), self.batch_size):
                a, b = zip(*pairs[i:i + self.batch_size], strict=True)
                enc = self.tokenizer(list(a), list(b), truncation="only_first", max_length=self.max_length,
                                     padding=True, return_tensors="pt")
                probs = self.model(**enc).logits.float().softmax(-1)[:, self.label_index]
                out += probs.tolist()
        return out



JUDGE_PROMPT = "Context: {context}\n\nClaim: {claim}\n\nIs the claim supported by the context? Answer Yes or No."


class LMJudgeAlignment:
    """f(a, b) from any causal LM behind the sampler protocol, asked whether the claim is supported:
    P(yes) / (P(yes) + P(no)) of the teacher-forced answers [design: an alignment model when no AlignScore
    checkpoint is at hand; it is not AlignScore's trained head, so its scores are not comparable to the paper's]."""

    def __init__(self, sampler: Any, template: str = JUDGE_PROMPT, yes: str = "Yes", no: str = "No") -> None:
        self.sampler, self.template, self.yes, self.no = sampler, template, yes, no

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return choice_probability(self.sampler, [self.template.format(context=a, claim=b) for a, b in pairs],
                                  self.yes, self.no)


def choice_probability(sampler: Any, prompts: Sequence[Any], a: str, b: str) -> list[float]:
    """P(a) / (P(a) + P(b)) of the two teacher-forced answers per prompt (a sampler with `score_logprobs`)."""
    import math

    n = len(prompts)
    lp = [sum(v) for v in sampler.score_logprobs(list(prompts) * 2, [a] * n + [b] * n)]
    return [1.0 / (1.0 + math.exp(lp[n + i] - lp[i])) for i in range(n)]

def aggregate(scores: Sequence[tuple[str, float]], agg: Literal["mean", "sum"] = "mean",
              remove_stopwords: bool = False) -> float:
    """CTC's `Aligner.aggregate` over (token, score) pairs."""
    kept = [s for t, s in scores if not (remove_stopwords and t.lower().strip() in STOPWORDS)]
    if not kept:
        return 0.0
    return float(sum(kept)) if agg == "sum" else float(sum(kept) / len(kept))


def ctc_consistency(y: str, x: str, align: TokenAligner, *, remove_stopwords: bool = False) -> float:
    return aggregate(align(y, x), "mean", remove_stopwords)


def ctc_relevance(y: str, x: str, references: Sequence[str], align: TokenAligner, *,
                  remove_stopwords: bool = False) -> float:
    if not references:
        raise ConfigError("relevance needs at least one reference")
    cover = sum(aggregate(align(r, y), "mean", remove_stopwords) for r in references) / len(references)
    return ctc_consistency(y, x, align, remove_stopwords=remove_stopwords) * cover


def ctc_preservation(y: str, x: str, align: TokenAligner, *, remove_stopwords: bool = False) -> float:
    a = aggregate(align(y, x), "mean", remove_stopwords)
    b = aggregate(align(x, y), "mean", remove_stopwords)
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def ctc_engagingness(y: str, fact: str, history: str, align: TokenAligner, *, remove_stopwords: bool = True
                     ) -> float:
    return aggregate(align(y, f"{fact}\n\n\n{history}"), "sum", remove_stopwords)


def ctc_groundedness(y: str, fact: str, align: TokenAligner, *, agg: Literal["mean", "sum"] = "mean",
                     remove_stopwords: bool = True) -> float:
    return aggregate(align(y, fact), agg, remove_stopwords)


class EmbeddingAligner:
    """CTC's E aligner: each token of `a` scores max_j cos(h(a)_i, h(b)_j) over the tokens of `b`, with h the
    hidden states of `layer` of any HF model run on the raw text. The paper uses RoBERTa-large; with a causal LM
    the states are left-context only [design], and negative cosines are clipped to 0 so scores stay in [0, 1]."""

    def __init__(self, model: Any, tokenizer: Any, layer: int = -1, max_length: int = 512) -> None:
        self.model, self.tokenizer, self.layer, self.max_length = model.eval(), tokenizer, layer, max_length

    def _states(self, text: str) -> tuple[list[str], Any]:
        import torch

        enc = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_length,
                             add_special_tokens=False)
        with torch.inference_mode():
            h = self.model(**enc, output_hidden_states=True).hidden_states[self.layer][0].float()
        tokens = [self.tokenizer.decode([t]) for t in enc["input_ids"][0].tolist()]
        return tokens, torch.nn.functional.normalize(h, dim=-1)

    def __call__(self, a: str, b: str) -> list[tuple[str, float]]:
        tok_a, ha = self._states(a)
        tok_b, hb = self._states(b)
        if not tok_a or not tok_b:
            return [(t, 0.0) for t in tok_a]
        best = (ha @ hb.T).max(dim=1).values.clamp(0.0, 1.0)
        return list(zip(tok_a, best.tolist(), strict=True))


# aspect -> (the row fields it reads besides `output`, the score of one row)
_CTC: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any], TokenAligner, bool], float]]] = {
    "consistency": (("input",), lambda r, al, rs: ctc_consistency(r["output"], r["input"], al, remove_stopwords=rs)),
    "relevance": (("input", "references"), lambda r, al, rs: ctc_relevance(
        r["output"], r["input"], r["references"], al, remove_stopwords=rs)),
    "preservation": (("input",), lambda r, al, rs: ctc_preservation(r["output"], r["input"], al,
                                                                    remove_stopwords=rs)),
    "engagingness": (("fact", "history"), lambda r, al, rs: ctc_engagingness(
        r["output"], r["fact"], r["history"], al, remove_stopwords=rs)),
    "groundedness": (("fact",), lambda r, al, rs: ctc_groundedness(r["output"], r["fact"], al,
                                                                   remove_stopwords=rs)),
}
CTC_ASPECTS: dict[str, tuple[str, ...]] = {a: fields for a, (fields, _) in _CTC.items()}


def ctc_score(rows: Sequence[dict[str, Any]], aspect: str, align: TokenAligner,
              remove_stopwords: bool | None = None) -> tuple[Any, list[float]]:
    """One CTC aspect per row `{output, input | references | fact, history}` (CTC_ASPECTS) and its mean with a
    bootstrap CI. `remove_stopwords` None = the code's default (dialog aspects True, the others False)."""
    from alignkit.evaluate.stats import mean_ci

    if aspect not in _CTC:
        raise ConfigError(f"unknown CTC aspect {aspect!r}; choose from {sorted(_CTC)}")
    rs = remove_stopwords if remove_stopwords is not None else aspect in ("engagingness", "groundedness")
    score = _CTC[aspect][1]
    per = [score(r, align, rs) for r in rows]
    return mean_ci(per), per
