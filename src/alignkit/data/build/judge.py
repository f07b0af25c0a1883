"""The `judge` builder: an LM judge ranks K policy samples (RLAIF / CycleAlign-style AI feedback).

RLAIF (Lee et al. 2023, *RLAIF: Scaling Reinforcement Learning from Human Feedback with AI Feedback*) labels
preferences with an off-the-shelf LM prompted to compare responses; CycleAlign (Hong et al. 2023) asks a black-box
LM to *rank* several responses in one prompt. Here: sample K responses per prompt from the policy, show them to a
judge model (any Sampler) in a seeded random order (so position bias is not systematically in favour of sample
1), and parse a ranking such as ``Ranking: 2 > 1 > 3``.

Robust parsing (`parse_ranking`): the ranking is read from the last line mentioning "rank" if any, else from the
first chain like ``2 > 3 > 1`` (also ``,`` ``≻`` ``>>``, bracketed ``[2]``) anywhere, else from the numbers of the
first line that has any. Numbers must be 1..K without duplicates; a ranking of K-1 responses is completed with the
missing one last. Anything else is a parse failure with a reason (`no_ranking`, `out_of_range`, `duplicate`,
`incomplete`); the judge is re-asked up to `max_retries` times with fresh seeds at `retry_temperature`, and an item
that still fails is dropped as `judge_unparseable`. Every failure and retry is counted in the build report.

Records: listwise scores are K - rank position (best = K, worst = 1); pairwise records are best vs worst (or
every ordered pair) with no `margin` (ranks are not reward gaps); ranks and the raw judge output are in metadata.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from alignkit.data.build.common import (
    BuildItem,
    SamplingSettings,
    ScoredList,
    check_format,
    drop_reason,
    records_from_scores,
    sample_batch,
)
from alignkit.data.build.runner import Outcome
from alignkit.data.records import prompt_text
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError

DEFAULT_TEMPLATE = """You are an impartial judge. Rank the responses below to the user's request from best to worst, \
considering helpfulness, correctness and how well each follows the request's instructions.

[Request]
{prompt}

{responses}

Reply with the ranking only, in the form "Ranking: 2 > 1 > 3", using every response number exactly once."""

RESPONSE_BLOCK = "[Response {i}]\n{text}\n[End of Response {i}]"


class RankingParseError(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


_CHAIN = re.compile(r"\[?\s*\d+\s*\]?(?:\s*(?:>>|>|≻|,)\s*\[?\s*\d+\s*\]?)+")


def parse_ranking(text: str, k: int) -> list[int]:
    """The judge's ranking as 0-based response indices, best first; raises RankingParseError with a reason."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    segment = None
    rank_lines = [line for line in text.splitlines() if re.search(r"rank", line, re.IGNORECASE)]
    for line in reversed(rank_lines):
        after = re.split(r"rank\w*\s*[:\-]?", line, maxsplit=1, flags=re.IGNORECASE)[-1]
        if re.search(r"\d", after):
            segment = after
            break
    if segment is None:
        chain = _CHAIN.search(text)
        if chain:
            segment = chain.group(0)
    if segment is None:
        segment = next((line for line in text.splitlines() if re.search(r"\d", line)), None)
    if segment is None:
        raise RankingParseError("no_ranking", "no response numbers in the judge output")
    chain = _CHAIN.search(segment)
    numbers = [int(x) for x in re.findall(r"\d+", chain.group(0) if chain else segment)]
    if any(not 1 <= x <= k for x in numbers):
        raise RankingParseError("out_of_range", f"numbers {numbers} outside 1..{k}")
    if len(set(numbers)) != len(numbers):
        raise RankingParseError("duplicate", f"numbers {numbers} repeat")
    if len(numbers) == k - 1:
        numbers.append(next(x for x in range(1, k + 1) if x not in numbers))
    if len(numbers) != k:
        raise RankingParseError("incomplete", f"ranked {len(numbers)} of {k} responses")
    return [x - 1 for x in numbers]


class JudgeBuilder:
    """Sample K completions from `policy`; `judge` ranks them.

    Args:
        policy, judge: Samplers (they may be the same model).
        sampling: policy sampling (n = K).
        template: judge prompt with `{prompt}` and `{responses}` slots.
        judge_max_new_tokens, judge_temperature: the judge's first attempt (0 = greedy).
        max_retries, retry_temperature: re-asks after a parse failure, sampled with fresh seeds.
        shuffle: present responses in a seeded random order to the judge.
    """

    name = "judge"

    def __init__(self, policy: Sampler, judge: Sampler, sampling: SamplingSettings | None = None, *,
                 template: str = DEFAULT_TEMPLATE, fmt: str = "pairwise", pair_mode: str = "best-vs-worst",
                 judge_max_new_tokens: int = 32, judge_temperature: float = 0.0, max_retries: int = 2,
                 retry_temperature: float = 1.0, shuffle: bool = True, policy_name: str = "policy",
                 judge_name: str = "judge") -> None:
        for slot in ("{prompt}", "{responses}"):
            if slot not in template:
                raise ConfigError(f"judge template must contain the slot {slot}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        self.policy, self.judge = policy, judge
        self.sampling = sampling or SamplingSettings()
        if self.sampling.n < 2:
            raise ConfigError(f"the judge ranks n >= 2 responses per prompt, got n={self.sampling.n}")
        self.template, self.fmt, self.pair_mode = template, fmt, pair_mode
        check_format(fmt, pair_mode)
        self.judge_max_new_tokens, self.judge_temperature = judge_max_new_tokens, judge_temperature
        self.max_retries, self.retry_temperature, self.shuffle = max_retries, retry_temperature, shuffle
        self.policy_name, self.judge_name = policy_name, judge_name

    def settings(self) -> dict[str, Any]:
        return {"policy": self.policy_name, "judge": self.judge_name, "sampling": self.sampling.as_dict(),
                "format": self.fmt, "pair_mode": self.pair_mode, "template": self.template,
                "judge_decoding": {"max_new_tokens": self.judge_max_new_tokens,
                                   "temperature": self.judge_temperature, "max_retries": self.max_retries,
                                   "retry_temperature": self.retry_temperature, "shuffle": self.shuffle}}

    def judge_prompt(self, prompt: Any, shown: Sequence[str]) -> str:
        blocks = "\n\n".join(RESPONSE_BLOCK.format(i=i + 1, text=t) for i, t in enumerate(shown))
        return self.template.format(prompt=prompt_text(prompt), responses=blocks)

    def _order(self, key: str, n: int) -> list[int]:
        order = list(range(n))
        if self.shuffle:
            random.Random(f"{self.sampling.seed}|{key}").shuffle(order)
        return order

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        samples = sample_batch(self.policy, items, self.sampling)
        texts = [[s.text for s in row] for row in samples]
        orders = [self._order(item.key, len(row)) for item, row in zip(items, texts, strict=True)]
        judge_prompts = [self.judge_prompt(item.prompt, [row[j] for j in order])
                         for item, row, order in zip(items, texts, orders, strict=True)]
        rankings: dict[int, list[int]] = {}
        raw: dict[int, list[str]] = {i: [] for i in range(len(items))}
        failures: dict[int, Counter] = {i: Counter() for i in range(len(items))}
        pending = list(range(len(items)))
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            temperature = self.judge_temperature if attempt == 0 else self.retry_temperature
            out = self.judge.sample([judge_prompts[i] for i in pending], n=1,
                                    max_new_tokens=self.judge_max_new_tokens, temperature=temperature,
                                    seed=self.sampling.seed * 1000 + attempt)
            still = []
            for i, row in zip(pending, out, strict=True):
                text = row[0].text
                raw[i].append(text)
                try:
                    shown_rank = parse_ranking(text, len(texts[i]))
                except RankingParseError as e:
                    failures[i][f"judge_parse_failures:{e.reason}"] += 1
                    still.append(i)
                    continue
                rankings[i] = [orders[i][j] for j in shown_rank]  # back to sample indices
            pending = still
        outcomes = []
        for i, item in enumerate(items):
            skipped = dict(failures[i])
            retries = len(raw[i]) - 1
            if retries:
                skipped["judge_retries"] = retries
            if i not in rankings:
                outcomes.append(Outcome(item.key, dropped="judge_unparseable", skipped=skipped))
                continue
            ranking = rankings[i]
            k = len(ranking)
            scores = [0.0] * k
            for pos, j in enumerate(ranking):
                scores[j] = float(k - pos)
            meta = {"builder": self.name, "policy": self.policy_name, "judge": self.judge_name,
                    "sampling": self.sampling.as_dict(), "ranking": ranking, "judge_output": raw[i][-1],
                    "judge_attempts": len(raw[i]), "presented_order": orders[i]}
            ident = getattr(item.source, "metadata", {}).get("id") if not isinstance(item.source, dict) else None
            if ident is not None:
                meta["prompt_id"] = ident
            records, skips = records_from_scores(ScoredList(item, texts[i], scores), self.fmt, meta,
                                                 self.pair_mode)
            if self.fmt == "pairwise":
                records = [dataclasses.replace(r, margin=None) for r in records]
            skipped.update(skips)
            outcomes.append(Outcome(item.key, records, drop_reason(records, skipped), skipped))
        return outcomes
