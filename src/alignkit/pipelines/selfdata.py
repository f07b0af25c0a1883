"""On-policy self-generated data: sample n completions per prompt from the *current* policy, score each with a
verifier, and keep everything (texts, scores, finish reasons) as listwise records; then select training data.

This is the data step of the iterated recipes (`alignkit.pipelines.recipe`):

* **Rejection-sampling fine-tuning** (RFT; Touvron et al. 2023 §3.2.2, *Llama 2*; Dong et al. 2023, *RAFT*;
  Singh et al. 2023, *ReST-EM*, arXiv 2312.06585): keep the samples whose reward reaches `min_score` (strict: every
  constraint holds) and that ended by themselves (EOS: a truncated answer is not a demonstration), at most
  `per_prompt` per prompt, and fine-tune on them with the `sft` objective.
* **On-policy pairs** (iterated DPO; Xu et al. 2023, *Some things are more CRINGE than others*; Xiong et al. 2024,
  *Iterative preference learning*, arXiv 2312.11456; ACT, arXiv 2403.06326 for the CSR ranking): the best sample
  against the worst, when their scores differ.

The listwise file records each sample's finish reason, so the selection is done afterwards and can be changed
without sampling again. Building goes through `data.build.runner.run_build`, so it is resumable and locked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alignkit.data.build.common import BuildItem, SamplingSettings, sample_batch
from alignkit.data.build.reward import score_items
from alignkit.data.build.runner import Outcome
from alignkit.data.records import ListwiseExample, PairwiseExample, SFTExample
from alignkit.decode.sampler import UNFINISHED, Sampler
from alignkit.errors import ConfigError


class ScoredSamplesBuilder:
    """Sample `sampling.n` completions per prompt from `policy`, score them with `reward`, and write ONE listwise
    record per prompt with every sample (ties included) and `metadata.finish_reasons`. Prompts without
    constraints are dropped (`no_constraints`) when the reward needs them (`needs_constraints`).

    `early_reject`: stop a sample as soon as its partial text breaks a constraint for good
    (`alignkit.rewards.early_reject`; finish reason `rejected`, scored on the text it had). For RFT data only:
    a rejected sample could never have been a demonstration, so the selected demonstrations are the same and the
    compute goes to other prompts; pairs would lose their full-length losers. Needs a sampler with
    `supports_reject` (HFSampler); others sample in full."""

    name = "scored-samples"

    def __init__(self, policy: Sampler, reward: Any, sampling: SamplingSettings, *, policy_name: str,
                 reward_spec: str, needs_constraints: bool = True, early_reject: bool = False) -> None:
        self.policy, self.reward, self.sampling = policy, reward, sampling
        self.policy_name, self.reward_spec = policy_name, reward_spec
        self.needs_constraints = needs_constraints
        self.early_reject = early_reject and bool(getattr(policy, "supports_reject", False))

    def settings(self) -> dict[str, Any]:
        return {"builder": self.name, "reward": self.reward_spec, "policy": self.policy_name,
                "sampling": self.sampling.as_dict(), **({"early_reject": True} if self.early_reject else {})}

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        from alignkit.rewards.early_reject import doomed_check

        usable = [i for i in items if i.constraints or not self.needs_constraints]
        reject = [doomed_check(i.constraints) for i in usable] if self.early_reject else None
        samples = sample_batch(self.policy, usable, self.sampling, reject=reject) if usable else []
        texts = [[s.text for s in row] for row in samples]
        scores = score_items(self.reward, usable, texts) if usable else []
        done = {i.key: (row, sc) for i, row, sc in zip(usable, samples, scores, strict=True)}
        out = []
        for item in items:
            if item.key not in done:
                out.append(Outcome(item.key, dropped="no_constraints"))
                continue
            row, sc = done[item.key]
            meta: dict[str, Any] = {"builder": self.name, "policy": self.policy_name, "reward": self.reward_spec,
                                    "finish_reasons": [s.finish_reason for s in row],
                                    "n_tokens": [len(s.token_ids) for s in row], "constraints": item.constraints}
            source_meta = getattr(item.source, "metadata", None) or {}
            for key in ("id", "base_task"):
                if key in source_meta:
                    meta["prompt_id" if key == "id" else key] = source_meta[key]
            record = ListwiseExample(prompt=item.prompt, completions=[s.text for s in row],
                                     scores=[float(x) for x in sc], metadata=meta)
            out.append(Outcome(item.key, [record]))
        return out


@dataclass
class Selection:
    """Training records chosen from scored lists, with the reasons the rest were not used."""

    records: list[Any] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {"records": len(self.records), "skipped": dict(self.skipped)}


def _finished(lst: ListwiseExample) -> list[bool]:
    reasons = lst.metadata.get("finish_reasons")
    if reasons is None:
        raise ConfigError("scored lists carry no `finish_reasons` metadata; they were not written by "
                          "ScoredSamplesBuilder (use require_eos=False)")
    return [r not in UNFINISHED for r in reasons]


def select_rft(lists: Sequence[ListwiseExample], *, min_score: float = 1.0, require_eos: bool = True,
               per_prompt: int = 1, min_distinct_2: float = 0.0) -> Selection:
    """RFT demonstrations: up to `per_prompt` distinct samples per prompt with score >= `min_score` (and ended by
    EOS/stop when `require_eos`), best first, ties in sample order.

    `min_distinct_2`: drop a passing sample whose share of distinct word bigrams (distinct-2 within the answer,
    `evaluate.guards.distinct_within`) is below this; an answer too short to repeat is kept. Repetition satisfies several checks ("at least N words", keyword
    and letter frequencies) without doing the task, and a policy fine-tuned on its own loops loops more each round
    (docs/efficacy.md #9); natural answers sit near 0.97, a loop far below."""
    from alignkit.evaluate.guards import distinct_within

    if per_prompt < 1:
        raise ConfigError(f"per_prompt must be >= 1, got {per_prompt}")
    if not 0.0 <= min_distinct_2 <= 1.0:
        raise ConfigError(f"min_distinct_2 must be in [0, 1], got {min_distinct_2}")
    sel = Selection()
    for lst in lists:
        ended = _finished(lst) if require_eos else [True] * len(lst.completions)
        order = sorted(range(len(lst.scores)), key=lambda i: (-lst.scores[i], i))
        seen: set[str] = set()
        kept = 0
        for i in order:
            text = lst.completions[i]
            if lst.scores[i] < min_score or not text.strip() or text in seen:
                continue
            if not ended[i]:
                sel.skipped["truncated_passing_samples"] += 1
                continue
            if min_distinct_2 and (distinct_within(text, 2) or 1.0) < min_distinct_2:
                sel.skipped["repetitive_passing_samples"] += 1
                continue
            seen.add(text)
            sel.records.append(SFTExample(prompt=lst.prompt, completion=text,
                                          metadata={**lst.metadata, "score": lst.scores[i], "sample_index": i}))
            kept += 1
            if kept == per_prompt:
                break
        if kept == 0:
            sel.skipped["prompts_without_passing_sample"] += 1
    return sel


def select_pairs(lists: Sequence[ListwiseExample], *, require_eos: bool = True, min_margin: float = 0.0) -> Selection:
    """Best-vs-worst pairs. With `require_eos` the chosen sample must have ended by itself (a truncated text is
    never the preferred one); the rejected may be truncated (that is one thing the policy should unlearn)."""
    sel = Selection()
    for lst in lists:
        ended = _finished(lst) if require_eos else [True] * len(lst.completions)
        ok = [i for i, t in enumerate(lst.completions) if t.strip()]
        chosen_pool = [i for i in ok if ended[i]]
        if not chosen_pool:
            sel.skipped["no_finished_sample"] += 1
            continue
        best = min(chosen_pool, key=lambda i: (-lst.scores[i], i))
        worst = min(ok, key=lambda i: (lst.scores[i], -int(not ended[i]), i))
        if lst.scores[best] - lst.scores[worst] <= min_margin or lst.completions[best] == lst.completions[worst]:
            sel.skipped["tied"] += 1
            continue
        sel.records.append(PairwiseExample(prompt=lst.prompt, chosen=lst.completions[best],
                                           rejected=lst.completions[worst],
                                           margin=lst.scores[best] - lst.scores[worst],
                                           metadata={**lst.metadata, "chosen_index": best, "rejected_index": worst}))
    return sel


def list_stats(lists: Sequence[ListwiseExample], threshold: float = 1.0) -> dict[str, float]:
    """Share of samples that pass (score >= threshold), that ended by EOS, and of prompts with a passing sample."""
    n = sum(len(x.scores) for x in lists) or 1
    passing = sum(s >= threshold for x in lists for s in x.scores)
    ended = sum(sum(_finished(x)) for x in lists)
    any_pass = sum(any(s >= threshold for s in x.scores) for x in lists)
    rejected = sum(r == "rejected" for x in lists for r in x.metadata.get("finish_reasons") or [])
    return {"samples": n, "pass_rate": passing / n, "eos_rate": ended / n,
            "prompts_with_pass": any_pass / max(len(lists), 1), "rejected_rate": rejected / n}
