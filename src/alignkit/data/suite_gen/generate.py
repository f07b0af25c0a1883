"""Drawing suite records: base task, 1-3 compatible constraints, their kwargs and their wording.

Every draw comes from a `random.Random` seeded by `(seed, split)`, so train and test are independent streams
(resizing test leaves train unchanged) and the same seed always gives the same records. Within a split every
record has its own base task (sampled without replacement from the split's form x topic x audience pool).
"""

from __future__ import annotations

import random
from typing import Any

from alignkit.data.suite_gen.kinds import (
    CONSTRAINT_KINDS,
    KINDS_BY_ID,
    REPEAT_PROMPT,
    ConstraintKind,
    draw_kinds,
)
from alignkit.data.suite_gen.tasks import BaseTask, base_tasks, split_topics
from alignkit.data.suite_gen.wording import TEMPLATES, render_constraint
from alignkit.errors import DataError

SPLITS = ("train", "test")
DEFAULT_SEED = 0
DEFAULT_SIZES = {"train": 5000, "test": 400}
# Mostly one or two constraints: a 135M chat model should satisfy most prompts some of the time.
DEFAULT_COUNT_WEIGHTS = {1: 0.5, 2: 0.35, 3: 0.15}
TEST_TOPIC_FRACTION = 0.25


def render_prompt(base_task: str, constraints: list[dict[str, Any]], templates: list[str]) -> str:
    """The prompt: the base task, then each constraint in its template's wording, space-separated.

    `combination:repeat_prompt` must come last and its `prompt_to_repeat` must equal the text before it (IFEval:
    "the request you need to repeat does not include this sentence"); anything else is a DataError.
    """
    if len(templates) != len(constraints):
        raise DataError(f"{len(constraints)} constraints but {len(templates)} templates", field="templates")
    parts = [base_task]
    for i, (c, t) in enumerate(zip(constraints, templates, strict=True)):
        if c.get("id") not in KINDS_BY_ID:
            raise DataError(f"unknown constraint id {c.get('id')!r}; known: {sorted(KINDS_BY_ID)}",
                            field="constraints")
        if c["id"] == REPEAT_PROMPT:
            if i != len(constraints) - 1:
                raise DataError(f"{REPEAT_PROMPT} must be the last constraint", field="constraints")
            if c["kwargs"].get("prompt_to_repeat") != " ".join(parts):
                raise DataError(f"{REPEAT_PROMPT}: prompt_to_repeat must be the request before it",
                                field="constraints")
            parts.append(render_constraint(t, {"id": c["id"], "kwargs": {}}))
        else:
            parts.append(render_constraint(t, c))
    return " ".join(parts)


def _weighted(rng: random.Random, options: dict[int, float]) -> int:
    keys = list(options)
    return rng.choices(keys, weights=[options[k] for k in keys])[0]


def draw_record(rng: random.Random, task: BaseTask, split: str, index: int,
                count_weights: dict[int, float] = DEFAULT_COUNT_WEIGHTS,
                first: ConstraintKind | None = None) -> dict[str, Any]:
    """One suite record for `task`, worded with `split`'s templates (`first`: a kind it must include)."""
    kinds = draw_kinds(rng, _weighted(rng, count_weights), first)
    rng.shuffle(kinds)  # the order the constraints are stated in varies too
    kinds.sort(key=lambda k: k.id == REPEAT_PROMPT)  # stable: repeat_prompt (if any) goes last
    constraints = [{"id": k.id, "kwargs": k.sample(rng, task)} for k in kinds]
    templates = [f"{k.id}@{split}.{rng.randrange(len(TEMPLATES[k.id][split]))}" for k in kinds]
    if kinds and kinds[-1].id == REPEAT_PROMPT:
        before = render_prompt(task.text, constraints[:-1], templates[:-1])
        constraints[-1]["kwargs"] = {"prompt_to_repeat": before}
    return {"id": f"{split}-{index:05d}", "prompt": render_prompt(task.text, constraints, templates),
            "base_task": task.text, "constraints": constraints, "templates": templates,
            "topic": task.topic, "topic_words": list(task.words)}


def generate_suite(seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None,
                   count_weights: dict[int, float] = DEFAULT_COUNT_WEIGHTS,
                   test_topic_fraction: float = TEST_TOPIC_FRACTION) -> dict[str, list[dict[str, Any]]]:
    """The suite for `seed`: `{"train": [...], "test": [...]}` (default 5,000 / 400 records).

    Topics are partitioned between the splits (`split_topics`), and each split words its constraints with its
    own templates, so the splits share no base task, no prompt and no template (`suite_gen.overlap` checks it).
    """
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    topics = split_topics(seed, test_topic_fraction)
    out: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        pool = base_tasks(topics[split])
        n = sizes.get(split, 0)
        if n > len(pool):
            raise DataError(f"{split}: {n} prompts asked but only {len(pool)} distinct base tasks "
                            f"({len(topics[split])} topics)")
        rng = random.Random(f"suite-{seed}-{split}")
        tasks = rng.sample(pool, n)
        # The first records each include one kind in turn, so every instruction id occurs in a split of at
        # least len(CONSTRAINT_KINDS) prompts; the shuffle then spreads them, so any slice is a plain sample.
        forced: list[ConstraintKind | None] = [*CONSTRAINT_KINDS, *[None] * max(0, n - len(CONSTRAINT_KINDS))]
        records = [draw_record(rng, task, split, 0, count_weights, k) for task, k in zip(tasks, forced, strict=False)]
        rng.shuffle(records)
        for i, r in enumerate(records):
            r["id"] = f"{split}-{i:05d}"
        out[split] = records
    return out
