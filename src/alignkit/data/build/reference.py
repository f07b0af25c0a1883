"""The `reference` builder: BLEUBERI-style scoring against reference answers and hard-prompt selection.

BLEUBERI (Chang et al. 2025, *BLEUBERI: BLEU is a surprisingly effective reward for instruction following*,
arXiv 2505.11080; spec objectives.md §9.1): score policy samples with BLEU against the prompt's references
(add-one smoothing on every order, brevity penalty against the shortest reference; reward `bleu`) and keep the
*hard* prompts, those the policy scores lowest on. BLEUBERI samples one response per prompt and keeps the
`num_examples` lowest; here the policy's n samples are scored and prompts are ranked by their **mean** score.

Two phases, so that selection sees every prompt and the expensive part resumes:
1. sample and score every prompt with references, appending listwise records (ties kept) to
   `<out>.scored.jsonl` (resumable like every build; prompts without references are dropped as `no_references`);
2. select prompts by mean score (`hard`: lowest first, `easy`: highest first, `random`, or `all`) with a
   `fraction`, a count `num`, or a `threshold` (hard keeps mean <= threshold, easy keeps mean >= threshold), and
   write `out` (listwise, or pairwise best vs worst with `margin`) from the scored records. Phase 2 is a pure
   function of the scored file, so it is simply rewritten on every run.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignkit.data.build.common import (
    BuildItem,
    SamplingSettings,
    ScoredList,
    check_format,
    records_from_scores,
)
from alignkit.data.build.reward import RewardBuilder
from alignkit.data.build.runner import BuildReport, _read_lines, record_to_dict, run_build
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError

SELECT_MODES = ("hard", "easy", "random", "all")


class ReferenceScoringBuilder(RewardBuilder):
    """Phase 1: n samples per prompt scored against references; one listwise record per prompt, ties kept."""

    name = "reference"
    keep_tied_lists = True

    def __init__(self, policy: Sampler, reward: Any = None, sampling: SamplingSettings | None = None, *,
                 policy_name: str = "policy", reward_spec: str | None = None) -> None:
        if reward is None:
            from alignkit.rewards.registry import load_reward

            reward, reward_spec = load_reward("bleu"), reward_spec or "bleu"
        super().__init__(policy, reward, sampling, fmt="listwise", policy_name=policy_name,
                         reward_spec=reward_spec)

    def skip_reason(self, item: BuildItem) -> str | None:
        return None if item.references else "no_references"

    def item_metadata(self, item: BuildItem) -> dict[str, Any]:
        return {**super().item_metadata(item), "references": item.references}


def scored_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".scored.jsonl")


def select_prompts(rows: Sequence[dict[str, Any]], mode: str = "hard", *, fraction: float | None = None,
                   num: int | None = None, threshold: float | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Pick scored listwise rows by their mean score (see the module docstring). Exactly one of `fraction`,
    `num`, `threshold` may be given; with none, `mode` alone decides (`all` keeps everything)."""
    if mode not in SELECT_MODES:
        raise ConfigError(f"select mode must be one of {SELECT_MODES}, got {mode!r}")
    given = [x is not None for x in (fraction, num, threshold)]
    if sum(given) > 1:
        raise ConfigError("give at most one of fraction, num, threshold for prompt selection")
    if fraction is not None and not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if num is not None and num < 0:
        raise ConfigError(f"num must be >= 0, got {num}")
    if threshold is not None and mode not in ("hard", "easy"):
        raise ConfigError("a threshold selects with mode 'hard' (mean <= threshold) or 'easy' (mean >= threshold)")
    if mode == "all":
        return list(rows)

    def mean(r: dict[str, Any]) -> float:
        return float(sum(r["scores"]) / len(r["scores"]))

    if threshold is not None:
        keep = [r for r in rows if (mean(r) <= threshold if mode == "hard" else mean(r) >= threshold)]
        return sorted(keep, key=mean, reverse=(mode == "easy"))
    k = len(rows) if fraction is None and num is None else (num if num is not None else round(len(rows) * fraction))
    if mode == "random":
        order = list(rows)
        random.Random(seed).shuffle(order)
        return order[:k]
    # stable sort: ties keep input order, so selection is deterministic
    return sorted(rows, key=mean, reverse=(mode == "easy"))[:k]


def build_reference(policy: Sampler, items: Sequence[BuildItem], out: str | Path, *, reward: Any = None,
                    sampling: SamplingSettings | None = None, fmt: str = "pairwise", select: str = "hard",
                    fraction: float | None = None, num: int | None = None, threshold: float | None = None,
                    policy_name: str = "policy", reward_spec: str | None = None, batch_size: int = 8,
                    overwrite: bool = False, progress: bool = True, limit: int | None = None) -> BuildReport:
    """Run both phases; the report counts phase-1 drops and resumes plus phase-2 selection."""
    check_format(fmt)
    select_prompts([], select, fraction=fraction, num=num, threshold=threshold)  # validates selection early
    builder = ReferenceScoringBuilder(policy, reward, sampling, policy_name=policy_name, reward_spec=reward_spec)
    scored = scored_path(out)
    report = run_build(builder, items, scored, batch_size=batch_size, overwrite=overwrite, progress=progress,
                       limit=limit)
    rows, _ = _read_lines(scored)
    chosen = select_prompts(rows, select, fraction=fraction, num=num, threshold=threshold,
                            seed=builder.sampling.seed)
    selection = {"mode": select, "fraction": fraction, "num": num, "threshold": threshold, "by": "mean_score"}
    written = 0
    skipped: Counter = Counter()
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in chosen:
            meta = dict(row["metadata"])
            meta["mean_score"] = sum(row["scores"]) / len(row["scores"])
            meta["selection"] = selection
            item = BuildItem(meta.get("prompt_key", ""), row["prompt"], {})
            records, skips = records_from_scores(ScoredList(item, row["completions"], row["scores"]), fmt, meta)
            if not records:
                skipped["selected_but_all_tied"] += 1
            skipped.update({k: v for k, v in skips.items() if k != "all_tied"})
            for rec in records:
                f.write(json.dumps(record_to_dict(rec), ensure_ascii=False) + "\n")
                written += 1
    os.replace(tmp, out)
    report.out = str(out)
    report.extra["scored_records_written"] = report.records_written
    report.records_written = written
    report.skipped.update(skipped)
    report.skipped["not_selected"] += len(rows) - len(chosen)
    report.extra.update({"scored_file": str(scored), "prompts_scored": len(rows), "prompts_selected": len(chosen),
                         "records_in_output": written})
    report.records_total = written
    return report
