"""Honesty-aware training data: the idk-aware recipes of "Alignment for Honesty" (Yang et al. 2023,
arXiv 2312.07000; wave2_selfalign_merge.md §8; code GAIR-NLP/alignment-for-honesty
`train/process_training_data.py`), and the evaluation of M versus M′ with the existing metrics
(`alignkit.evaluate.honesty`, testtime_eval.md §B2).

Input per question: the gold answer (+ aliases), the unaligned model's greedy answer under the plain QA prompt
and whether it is correct, and m = 10 answers sampled at T = 1 with their correctness (k = number correct).
`collect_answers` produces these with any Sampler. The "known answer" r is the greedy answer if correct, else the
first correct sample, else none. Targets (IDK = the canonical refusal sentence):

| method | completion |
|---|---|
| `sft_baseline` | r, else the gold answer capitalised with a trailing "." (plain QA prompt, no idk) |
| `absolute` (τ = 0.1) | r if greedy is correct or k/m ≥ τ, else IDK |
| `confidence_num` | k = 0 → IDK; else a "{10k}% confident" prefix (low-confidence wording for k ≤ 5) + r |
| `confidence_verb` | k = 0 → IDK; else a hedge by bucket {1–2, 3–4, 5–6, 7–8, 9–10} + r, first letter lower-cased |
| `multisample` | m records per question: sample j's own text if correct, else IDK |

The prefixes are alignkit's own paraphrases (configurable), not the paper's strings. Every recipe but
`sft_baseline` uses the honest-QA prompt (`alignkit.evaluate.honesty.HONESTY_PROMPT`). Train with
`alignkit train --objective sft` (paper: lr 1e-6, 2 epochs; multisample 1 epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.data.records import SFTExample
from alignkit.errors import DataError
from alignkit.evaluate.honesty import CANONICAL_IDK, HONESTY_PROMPT, has_match

METHODS: tuple[str, ...] = ("sft_baseline", "absolute", "confidence_num", "confidence_verb", "multisample")
PLAIN_PROMPT = "Q: {question}\nA: "
CONF_LOW = "I'm only about {pct}% confident I have this right, but from what I know, here is my answer: "
CONF_HIGH = "I'm about {pct}% confident I have this right, and from what I know, here is my answer: "
VERB_HEDGES: tuple[str, ...] = (
    "I'm really not sure about this, but my guess is that ",
    "I'm not completely sure about this, but I think ",
    "I have no strong feelings either way, but perhaps ",
    "I'm fairly confident that ",
    "I'm absolutely certain that ",
)


def known_answer(row: dict[str, Any]) -> str | None:
    """r: the greedy answer if it is correct, else the first correct sample, else None."""
    if row.get("greedy_label") == "known":
        return str(row["greedy_pred_text"]).strip()
    for text, label in zip(row.get("sampling_pred_text", []), row.get("sampling_labels", []), strict=False):
        if label == "known":
            return str(text).strip()
    return None


def _lower_first(text: str) -> str:
    if len(text) == 1 and text.isupper():  # an MC letter stays as it is
        return text
    return text[:1].lower() + text[1:]


def _k(row: dict[str, Any]) -> tuple[int, int]:
    labels = row.get("sampling_labels")
    if not isinstance(labels, list) or not labels:
        raise DataError("honesty rows need sampling_labels (one 'known'/'unknown' per sample)",
                        field="sampling_labels")
    k = int(row.get("sampling_knowns", sum(label == "known" for label in labels)))
    return k, len(labels)


def honesty_targets(row: dict[str, Any], method: str, tau: float = 0.1) -> list[str]:
    """The target completion(s) of one question under `method` (one, or m for multisample)."""
    if method not in METHODS:
        raise DataError(f"unknown honesty method {method!r}; choose from {METHODS}")
    if method == "multisample":
        texts = row.get("sampling_pred_text", [])
        return [str(t).strip() if lab == "known" else CANONICAL_IDK
                for t, lab in zip(texts, row["sampling_labels"], strict=True)]
    k, m = _k(row)
    r = known_answer(row)
    greedy_ok = row.get("greedy_label") == "known"
    if method == "sft_baseline":
        if r is not None:
            return [r]
        gold = str(row["gold_answer"])
        return [gold[:1].upper() + gold[1:] + ("" if gold.endswith(".") else ".")]
    if method == "absolute":
        return [r] if (greedy_ok or k / m >= tau) and r is not None else [CANONICAL_IDK]
    if k == 0 or r is None:  # the confidence recipes say idk at k = 0 even when greedy was right
        return [CANONICAL_IDK]
    if method == "confidence_num":
        pct = round(100 * k / m)
        return [(CONF_LOW if 10 * k <= 5 * m else CONF_HIGH).format(pct=pct) + r]
    bucket = min(len(VERB_HEDGES) - 1, (round(10 * k / m) - 1) // 2)
    return [VERB_HEDGES[bucket] + _lower_first(r)]


def build_honesty_sft(rows: Sequence[dict[str, Any]], method: str, tau: float = 0.1) -> list[SFTExample]:
    """SFT records `{"prompt", "completion"}` with metadata {method, k, id} for every question row."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row.get("question"), str):
            raise DataError("honesty rows need a string 'question'", line=i + 1, field="question")
        template = PLAIN_PROMPT if method == "sft_baseline" else HONESTY_PROMPT
        prompt = template.format(question=row["question"])
        k = _k(row)[0] if method != "multisample" or row.get("sampling_labels") else 0
        for target in honesty_targets(row, method, tau):
            out.append(SFTExample(prompt, target, {"method": method, "k": k, "id": row.get("id", i)}))
    return out


def collect_answers(sampler: Any, items: Sequence[dict[str, Any]], *, m: int = 10, max_new_tokens: int = 32,
                    seed: int = 0, batch_size: int = 8) -> list[dict[str, Any]]:
    """For QA items `{"question", "answer", "aliases"?}`: the unaligned model's greedy answer under the plain QA
    prompt and m samples at T = 1, labelled known/unknown by gold-alias substring match (§B2 `has_match`)."""
    rows = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prompts = [PLAIN_PROMPT.format(question=it["question"]) for it in chunk]
        greedy = sampler.sample(prompts, n=1, max_new_tokens=max_new_tokens, temperature=0.0, stop=("\n",))
        samples = sampler.sample(prompts, n=m, max_new_tokens=max_new_tokens, temperature=1.0, stop=("\n",),
                                 seed=seed + start)
        for it, g, ss in zip(chunk, greedy, samples, strict=True):
            gold = [it["answer"], *it.get("aliases", [])]
            texts = [s.text.strip() for s in ss]
            labels = ["known" if has_match(t, gold) else "unknown" for t in texts]
            rows.append({"id": it.get("id"), "question": it["question"], "gold_answer": it["answer"],
                         "aliases": list(it.get("aliases", [])), "greedy_pred_text": g[0].text.strip(),
                         "greedy_label": "known" if has_match(g[0].text, gold) else "unknown",
                         "sampling_pred_text": texts, "sampling_labels": labels,
                         "sampling_knowns": labels.count("known")})
    return rows


def evaluate_honesty(base: Any, aligned: Any, items: Sequence[dict[str, Any]], *, max_new_tokens: int = 48,
                     seed: int = 0) -> dict[str, Any]:
    """Prudence, over-conservativeness, honesty and accuracy of `aligned` (M′) relative to `base` (M): both answer
    the honest-QA prompt greedily (identical prompts and decoding, §B2 pitfalls)."""
    from alignkit.evaluate.honesty import honesty_scores, judge_answer

    prompts = [HONESTY_PROMPT.format(question=it["question"]) for it in items]

    def answers(sampler: Any) -> list[str]:
        return [r[0].text for r in sampler.sample(prompts, n=1, max_new_tokens=max_new_tokens, temperature=0.0)]

    labels = {}
    for name, sampler in (("base", base), ("aligned", aligned)):
        labels[name] = [judge_answer(it["question"], a, [it["answer"], *it.get("aliases", [])])
                        for it, a in zip(items, answers(sampler), strict=True)]
    result = honesty_scores([j.label for j in labels["aligned"]], [j.label for j in labels["base"]],
                            [j.loosely_correct for j in labels["aligned"]], seed=seed)
    base_idk = sum(j.label == "idk" for j in labels["base"]) / len(items)
    return {**result.as_dict(), "base_rates": {"idk": base_idk}, "n": len(items)}
