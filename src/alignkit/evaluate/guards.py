"""Guards against a hollow win: what would reveal reward hacking or damage next to a higher verifier score.

A policy tuned on constraint verifiers can "win" by writing less (fewer chances to break a rule), by repeating a
safe phrase, by always ending early, or by dropping the task and satisfying only the format. These numbers make
such a win visible beside the headline accuracy:

* **length**: words per answer (mean and quartiles) and the share of answers that ended by themselves (EOS or a
  stop string) rather than at the token budget;
* **repetition**: distinct-n (Li et al. 2016, *A Diversity-Promoting Objective Function*, NAACL): unique n-grams
  over all n-grams, within each answer (averaged) and across the run's answers (corpus level);
* **task overlap**: does the answer still do the base task? The share of the base task's content words (stopwords
  and the instruction verbs removed) that appear in the answer, averaged over prompts that carry a `base_task`.
  It is a coarse topicality check, not a quality judge; a drop against the base run flags answers that satisfy a
  format but left the topic.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from typing import Any

from alignkit.decode.sampler import UNFINISHED

_WORD = re.compile(r"[a-z0-9']+")
# Words that say what to do rather than what about (they carry no topic) plus common function words.
_STOP = frozenset("""a an the and or but if of to in on at for from by with about as into over under than then so
such this that these those it its is are was were be been being do does did done have has had having i you he she
we they me him her us them my your his our their what which who whom whose when where why how all any each few more
most other some no nor not only own same too very can will just should now write give describe explain tell make
list share create compose draft offer provide suggest short brief simple little one two three few some someone
something your yourself""".split())


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_within(text: str, n: int) -> float | None:
    """Unique/total word n-grams of one answer; None when it has fewer than n words (nothing can repeat)."""
    grams = _ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else None


def distinct_n(texts: Sequence[str], n: int) -> dict[str, float]:
    """`within`: mean over answers of `distinct_within` (answers shorter than n are left out); `corpus`: unique
    n-grams of all answers over their total."""
    per, pooled, total = [], set(), 0
    for t in texts:
        grams = _ngrams(words(t), n)
        if grams:
            per.append(len(set(grams)) / len(grams))
            pooled.update(grams)
            total += len(grams)
    return {"within": statistics.fmean(per) if per else 0.0, "corpus": len(pooled) / total if total else 0.0}


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in _STOP and len(w) > 2}


def task_overlap(base_task: str, answer: str) -> float | None:
    """Share of the base task's content words found in the answer (None when the task has none)."""
    task = content_words(base_task)
    if not task:
        return None
    found = set(words(answer))
    # A plural or -ing form counts: "cats" answers "cat", "painting" answers "paint".
    hits = sum(any(w == t or w.startswith(t) for w in found) for t in task)
    return hits / len(task)


def _quartiles(values: Sequence[float]) -> list[float]:
    if len(values) < 2:
        return [float(values[0])] * 3 if values else [0.0] * 3
    return [float(q) for q in statistics.quantiles(values, n=4, method="inclusive")]


def guard_metrics(completions: Sequence[str], finish_reasons: Sequence[str | None] = (),
                  base_tasks: Sequence[str | None] = ()) -> dict[str, Any]:
    """Length, ending, repetition and task-overlap numbers for one run's answers (see the module docstring)."""
    lengths = [len(words(c)) for c in completions]
    out: dict[str, Any] = {
        "n": len(completions),
        "words": {"mean": statistics.fmean(lengths) if lengths else 0.0, "quartiles": _quartiles(lengths)},
        "distinct_1": distinct_n(completions, 1), "distinct_2": distinct_n(completions, 2),
        "empty_share": sum(not c.strip() for c in completions) / max(len(completions), 1),
    }
    known = [r for r in finish_reasons if r is not None]
    if known:
        out["ended_share"] = sum(r not in UNFINISHED for r in known) / len(known)
    overlaps = [o for t, c in zip(base_tasks, completions, strict=False) if t
                for o in [task_overlap(t, c)] if o is not None]
    if overlaps:
        out["task_overlap"] = {"mean": statistics.fmean(overlaps), "n": len(overlaps)}
    return out


# How far a guard may move against the base before the run is flagged (a trained policy *should* change length
# and ending; these catch the ways a constraint win goes hollow).
DISTINCT_2_DROP = 0.1  # repetition: the share of distinct bigrams within an answer falls by more than this
EMPTY_SHARE_RISE = 0.05  # empty answers
KL_NATS = 25.0  # per answer: far from the base even for a small model


def guard_warnings(run: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Plain-language warnings where `run`'s guards (an eval.json headline) moved away from `base`'s in a way
    that would make an accuracy gain hollow: repetition, empty answers, a large KL. Thresholds above."""
    out = []
    g, b = run.get("guards") or {}, base.get("guards") or {}
    d_run, d_base = (g.get("distinct_2") or {}).get("within"), (b.get("distinct_2") or {}).get("within")
    if d_run is not None and d_base is not None and d_base - d_run > DISTINCT_2_DROP:
        out.append(f"repetition: distinct-2 within answers fell from {d_base:.2f} to {d_run:.2f}; read samples "
                   "before trusting the accuracy gain")
    e_run, e_base = g.get("empty_share"), b.get("empty_share")
    if e_run is not None and e_base is not None and e_run - e_base > EMPTY_SHARE_RISE:
        out.append(f"empty answers: {e_base:.0%} -> {e_run:.0%}")
    kl = (run.get("kl") or {}).get("value")
    if kl is not None and kl > KL_NATS:
        out.append(f"KL to the base is {kl:.1f} nats per answer (> {KL_NATS:.0f}): the policy moved far")
    return out
