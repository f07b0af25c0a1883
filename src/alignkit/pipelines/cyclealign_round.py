"""One CycleAlign round's data (spec ../shared/spec/wave2_selfalign_merge.md §2, step 2.1–2.4; [paper] with
[uncertain] details, whose recommended defaults are the parameters of `CycleAlignConfig`).

The white-box policy samples N responses per prompt; the black-box judge (any model behind the Sampler protocol)
ranks them in context, guided by a static instruction and k dynamic demonstrations from the pool; the policy's
own belief ranking (length-averaged log-prob) is compared with it, and the agreement (LCS) joins the pool when it
is at least `min_agreement` long. The training lists are ordered by the judge's ranking (scores = N − rank).

Files written into the round's data directory: `generated.jsonl` (every list with both rankings, the agreement and
`drop_reason`), `judge.jsonl` (raw judge replies, re-asks included), `kept.jsonl` (ListwiseExample training
lists) and `pool.jsonl` (the demonstration pool after this round: the previous round's plus this round's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignkit.data.records import Prompt
from alignkit.decode.sampler import Sampler
from alignkit.pipelines.cyclealign import agreement, belief_ranking, parse_ranking, scores_from_ranking
from alignkit.pipelines.isheep import rouge_l_f1

STATIC_PROMPT = (
    "You rank the responses of an AI assistant to a user's request from best to worst. A better response is more "
    "helpful, more harmless and more honest.\n"
    "Reply with the ranking only, best first, in the form [2] > [1] > [3].\n\n"
    "Example.\nRequest: How do I boil an egg?\n"
    "[1] Put it in a pan.\n[2] Cover the egg with water, bring it to a boil, then simmer for 8 to 10 minutes.\n"
    "[3] Eggs are laid by hens.\nRanking: [2] > [1] > [3]\n")


@dataclass
class CycleAlignConfig:
    """CycleAlign settings (spec §2); every default is the spec's recommendation for an [uncertain] detail."""

    prompts: str = ""  # prompt source (a JSONL of `prompt` rows, `suite:train`, ...)
    prompts_per_round: int = 64  # round t trains on the t-th disjoint chunk
    heldout_prompts: int = 0  # the first H prompts are never trained on; their agreement rate is the round's eval
    judge_model: str = ""  # the black-box ranker, a model spec served through the Sampler protocol
    n_samples: int = 4  # N responses per prompt
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: int = 128
    judge_max_new_tokens: int = 64
    demos: int = 2  # k dynamic demonstrations per judge prompt
    demo_selection: Literal["similarity", "recent"] = "similarity"  # similarity: ROUGE-L F1 to the prompt [design]
    min_agreement: int = 3  # m_min: shorter agreements do not join the pool
    objective: str = "pro"  # listwise ranking loss on the judge's order (PRO includes an SFT term on the top item)
    static_prompt: str = STATIC_PROMPT
    judge_chat: bool = True  # send the ranking prompt as a user turn through the judge's chat template


def prompt_text(prompt: Prompt) -> str:
    """A prompt as plain text for the judge: a chat list becomes `role: content` lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def select_demos(pool: Sequence[dict[str, Any]], prompt: str, k: int, how: str = "similarity"
                 ) -> list[dict[str, Any]]:
    """k pool entries: the most recent, or the most ROUGE-L-similar to `prompt` (ties: the more recent)."""
    if k <= 0 or not pool:
        return []
    if how == "recent":
        return list(pool[-k:])
    order = sorted(range(len(pool)), key=lambda i: (-rouge_l_f1(prompt, pool[i]["prompt"]), -i))
    return [pool[i] for i in order[:k]]


def ranking_prompt(prompt: str, completions: Sequence[str], demos: Sequence[dict[str, Any]],
                   static: str = STATIC_PROMPT) -> str:
    """S ⊕ demos ⊕ x ⊕ numbered responses; a demonstration shows its agreement ranking (1-based)."""
    parts = [static]
    for d in demos:
        numbered = "\n".join(f"[{i + 1}] {c}" for i, c in enumerate(d["completions"]))
        ranking = " > ".join(f"[{i + 1}]" for i in d["agreement"])
        parts.append(f"Example.\nRequest: {d['prompt']}\n{numbered}\nRanking: {ranking}\n")
    numbered = "\n".join(f"[{i + 1}] {c}" for i, c in enumerate(completions))
    parts.append(f"Now rank these.\nRequest: {prompt}\n{numbered}\nRanking:")
    return "\n".join(parts)


def judge_rankings(judge: Sampler, texts: Sequence[str], lists: Sequence[Sequence[str]],
                   pool: Sequence[dict[str, Any]], cfg: CycleAlignConfig, seed: int
                   ) -> tuple[list[list[int] | None], list[dict[str, Any]]]:
    """The judge's ranking per list: an unparseable reply or an incomplete permutation is asked once more, then
    the list is dropped (None). Returns the rankings and the raw replies."""
    asks = [ranking_prompt(t, c, select_demos(pool, t, cfg.demos, cfg.demo_selection), cfg.static_prompt)
            for t, c in zip(texts, lists, strict=True)]
    rankings: list[list[int] | None] = [None] * len(asks)
    raw: list[dict[str, Any]] = []
    todo = list(range(len(asks)))
    for attempt in range(2):
        if not todo:
            break
        replies = judge.sample([[{"role": "user", "content": asks[i]}] if cfg.judge_chat else asks[i]
                                for i in todo], n=1, max_new_tokens=cfg.judge_max_new_tokens,
                               temperature=0.0, seed=seed + attempt)
        for i, reply in zip(todo, replies, strict=True):
            rankings[i] = parse_ranking(reply[0].text, len(lists[i]))
            raw.append({"prompt": texts[i], "attempt": attempt + 1, "text": reply[0].text,
                        "ranking": rankings[i]})
        todo = [i for i in todo if rankings[i] is None]
    return rankings, raw


def rank_lists(policy: Sampler, judge: Sampler, prompts: Sequence[Prompt], pool: Sequence[dict[str, Any]],
               cfg: CycleAlignConfig, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sample N responses per prompt from `policy`, rank them by the judge and by the policy's belief, and
    compute the agreement; returns one row per prompt and the raw judge replies."""
    samples = policy.sample(list(prompts), n=cfg.n_samples, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, top_p=cfg.top_p, seed=seed)
    lists = [[s.text for s in row] for row in samples]
    flat_p = [p for p, row in zip(prompts, lists, strict=True) for _ in row]
    flat_c = [c for row in lists for c in row]
    token_lps = policy.score_logprobs(flat_p, flat_c)
    avg = [sum(t) / max(len(t), 1) for t in token_lps]
    texts = [prompt_text(p) for p in prompts]
    rankings, raw = judge_rankings(judge, texts, lists, pool, cfg, seed + 1)
    rows = []
    for i, (prompt, comps, judged) in enumerate(zip(prompts, lists, rankings, strict=True)):
        a = avg[i * cfg.n_samples:(i + 1) * cfg.n_samples]
        belief = belief_ranking(a)
        agree = agreement(judged, belief) if judged is not None else []
        rows.append({"prompt": prompt, "completions": comps, "avg_logps": a, "judge_ranking": judged,
                     "belief_ranking": belief, "agreement": agree,
                     "drop_reason": None if judged is not None else "unparsed_ranking"})
    return rows, raw


def agreement_rate(rows: Sequence[dict[str, Any]]) -> float | None:
    """mean(|R_a| / N) over the lists the judge ranked (the cycle's headline diagnostic)."""
    judged = [r for r in rows if r["judge_ranking"] is not None]
    return sum(len(r["agreement"]) / len(r["completions"]) for r in judged) / len(judged) if judged else None


def build_round(out: Path, policy: Sampler, judge: Sampler, prompts: Sequence[Prompt],
                pool: list[dict[str, Any]], cfg: CycleAlignConfig, *, iteration: int, source_model: str,
                judge_model: str, seed: int) -> dict[str, Any]:
    """One round's lists, pool update and training set; writes the four files into `out`."""
    from alignkit.data.io import write_records
    from alignkit.data.readers.jsonl import write_jsonl
    from alignkit.data.records import ListwiseExample

    rows, raw = rank_lists(policy, judge, prompts, pool, cfg, seed)
    kept, added = [], []
    for row in rows:
        row.update(iteration=iteration, source_model=source_model, judge_model=judge_model)
        if row["judge_ranking"] is not None and any(not c.strip() for c in row["completions"]):
            row["drop_reason"] = "empty_completion"  # a ranked list with an empty answer cannot be a record
        if row["drop_reason"] is not None:
            continue
        kept.append(ListwiseExample(prompt=row["prompt"], completions=row["completions"],
                                    scores=scores_from_ranking(row["judge_ranking"]), metadata={
                                        "judge_ranking": row["judge_ranking"],
                                        "belief_ranking": row["belief_ranking"], "agreement": row["agreement"],
                                        "iteration": iteration, "source_model": source_model,
                                        "judge_model": judge_model}))
        if len(row["agreement"]) >= cfg.min_agreement:
            added.append({"prompt": prompt_text(row["prompt"]), "completions": row["completions"],
                          "agreement": row["agreement"], "iteration": iteration})
    write_jsonl(out / "generated.jsonl", rows)
    write_jsonl(out / "judge.jsonl", raw)
    write_records(out / "kept.jsonl", kept)
    write_jsonl(out / "pool.jsonl", [*pool, *added])
    return {"source_model": source_model, "judge_model": judge_model, "prompts": len(rows), "kept": len(kept),
            "dropped": dict(Counter(r["drop_reason"] for r in rows if r["drop_reason"])),
            "agreement_rate": agreement_rate(rows),
            "pool_added": len(added), "pool_size": len(pool) + len(added)}
