"""Reward-augmented preference data (spec §6.1; Zhang et al. 2024, *Reward-Augmented Data Enhances Direct
Preference Alignment of LLMs*, arXiv 2410.08067): goal-conditioned relabelling that doubles a pairwise set.

Each pair (x, y_w, y_l) with judge scores (r_w, r_l) becomes two pairs:
  1. goal g = r_w: prompt = goal(r_w) + x, chosen = y_w, rejected = y_l;
  2. goal g = r_l: prompt = goal(r_l) + x, chosen = y_l, rejected = y_w (flipped: under goal r_l the response
     that actually scored r_l is the better match).
Train with plain DPO afterwards (the recipes add cDPO label smoothing 0.3 and β = 0.01). At inference condition
on the best goal (`goal_prompt(10)` on the UltraFeedback 1–10 scale).

Pairs with equal scores (contradictory relabelled pairs) and pairs with a missing score (None, NaN, or the
−100 sentinel the original code uses) are dropped and counted, never silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from alignkit.data.records import Message, PairwiseExample, Prompt
from alignkit.errors import DataError

DEFAULT_TEMPLATE = ("Write the response so that it implicitly achieves the following target score "
                    "(on a scale of {low}-{high}, higher is better). Overall score: {score}.")


@dataclass
class RelabelReport:
    """What `reward_augment` did: rows in and out, and every drop by reason."""

    pairs_in: int = 0
    pairs_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def format_score(score: float) -> str:
    """Integral values print without decimals (8.0 → "8"), other values as they are (7.5 → "7.5")."""
    return str(int(score)) if float(score).is_integer() else str(score)


def goal_prompt(score: float, *, template: str = DEFAULT_TEMPLATE, low: int = 1, high: int = 10) -> str:
    """The goal-conditioning instruction for a target score."""
    return template.format(score=format_score(score), low=low, high=high)


def condition_prompt(prompt: Prompt, goal: str, *, system_role: bool = True) -> Prompt:
    """Put `goal` in front of a prompt: as a system message (merged into an existing one), or, for chat templates
    without a system role (`system_role=False`), prepended to the first user turn followed by a blank line.
    A plain-string prompt becomes a chat (system + user) when `system_role`, else `goal + "\\n\\n" + prompt`."""
    if isinstance(prompt, str):
        if system_role:
            return [{"role": "system", "content": goal}, {"role": "user", "content": prompt}]
        return f"{goal}\n\n{prompt}"
    messages: list[Message] = [dict(m) for m in prompt]
    if system_role:
        if messages and messages[0].get("role") == "system":
            messages[0]["content"] = f"{goal}\n\n{messages[0].get('content', '')}".rstrip()
            return messages
        return [{"role": "system", "content": goal}, *messages]
    for m in messages:
        if m.get("role") == "user":
            m["content"] = f"{goal}\n\n{m.get('content', '')}"
            return messages
    raise DataError("prompt has no user turn to carry the goal; use system_role=True", field="prompt")


def _score(value: object) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isnan(v) or v == -100:
        return None
    return v


def reward_augment(pairs: Iterable[PairwiseExample], scores: Sequence[tuple[float, float]] | None = None, *,
                   chosen_key: str = "score_chosen", rejected_key: str = "score_rejected",
                   system_role: bool = True, template: str = DEFAULT_TEMPLATE, low: int = 1, high: int = 10,
                   ) -> tuple[list[PairwiseExample], RelabelReport]:
    """Relabel every pair into two goal-conditioned pairs (see the module docstring).

    Scores come from `scores[i] = (r_w, r_l)` when given, else from each record's `metadata[chosen_key]` and
    `metadata[rejected_key]` (UltraFeedback's overall scores). Output records keep the input metadata plus
    `goal_score` and `relabel` ("goal_chosen" / "goal_rejected"); `margin` is |r_w − r_l| for both.
    Returns (pairs, report); the report counts drops by reason: "equal_scores", "missing_score".
    """
    items = list(pairs)
    if scores is not None and len(scores) != len(items):
        raise DataError(f"got {len(scores)} score pairs for {len(items)} preference pairs", field="scores")
    report = RelabelReport(pairs_in=len(items))
    out: list[PairwiseExample] = []
    for i, ex in enumerate(items):
        if scores is not None:
            r_w, r_l = _score(scores[i][0]), _score(scores[i][1])
        else:
            r_w, r_l = _score(ex.metadata.get(chosen_key)), _score(ex.metadata.get(rejected_key))
        if r_w is None or r_l is None:
            report.drop("missing_score")
            continue
        if r_w == r_l:
            report.drop("equal_scores")
            continue
        margin = abs(r_w - r_l)
        for goal, chosen, rejected, tag in ((r_w, ex.chosen, ex.rejected, "goal_chosen"),
                                            (r_l, ex.rejected, ex.chosen, "goal_rejected")):
            prompt = condition_prompt(ex.prompt, goal_prompt(goal, template=template, low=low, high=high),
                                      system_role=system_role)
            out.append(replace(ex, prompt=prompt, chosen=chosen, rejected=rejected, margin=margin,
                               metadata={**ex.metadata, "goal_score": goal, "relabel": tag}))
    report.pairs_out = len(out)
    return out, report


__all__ = ["DEFAULT_TEMPLATE", "RelabelReport", "condition_prompt", "format_score", "goal_prompt", "reward_augment"]
