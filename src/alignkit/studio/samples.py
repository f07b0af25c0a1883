"""The sample browser's rows: several runs' samples joined by prompt, with per-constraint results and filters.

A sample row is joined to the others by `alignkit.evaluate.report.details.sample_key` (the prompt id, else the
prompt). Its per-constraint pass/fail comes from, in order: the row's `constraint_results`
(`[{"id", "strict", "loose"}]`); the row's `constraints` (`[{"id", "kwargs"}]`), checked here; else the prompt set
named by the run's config.yaml `prompts` (what `alignkit eval` and the demo write), matched by prompt id and
checked here with the IFEval verifiers (`alignkit.evaluate.ifeval.check_instructions`). A run with none of these
shows no constraints; nothing is guessed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alignkit.evaluate.report.details import sample_key
from alignkit.evaluate.runs import Run
from alignkit.studio.diff import changed

STATUSES = ("any", "passed", "failed")


@dataclass
class Cell:
    """One run's sample for one prompt."""

    run: str
    completion: str
    reward: float | None
    finish_reason: str | None
    compute: dict[str, Any]
    constraints: list[dict[str, Any]] = field(default_factory=list)  # {"id", "strict", "loose"}

    @property
    def passed(self) -> bool | None:
        return all(c["strict"] for c in self.constraints) if self.constraints else None


@dataclass
class SampleRow:
    key: str
    prompt: Any
    cells: list[Cell | None]  # one per selected run, None where that run has no sample for the prompt

    @property
    def changed(self) -> bool:
        texts = [c.completion for c in self.cells if c is not None]
        return any(changed(texts[0], t) for t in texts[1:])

    @property
    def constraint_types(self) -> set[str]:
        return {c["id"] for cell in self.cells if cell is not None for c in cell.constraints}


def _prompt_constraints(run: Run) -> dict[str, list[dict[str, Any]]]:
    """The constraints of each prompt id of the run's prompt set (config.yaml `prompts`), {} if unknown."""
    spec = run.config.get("prompts")
    if not isinstance(spec, str):
        return {}
    from alignkit.data.build.common import load_prompts
    from alignkit.errors import AlignkitError

    try:
        prompts = load_prompts(spec)
    except AlignkitError:  # a prompt file that moved since: the browser still shows the samples
        return {}
    return {str(p.metadata.get("id", i)): [dict(c) for c in p.constraints] for i, p in enumerate(prompts)}


def constraint_results(run: Run) -> dict[str, list[dict[str, Any]]]:
    """{sample key: [{"id", "strict", "loose"}, ...]} for every sample of `run` whose constraints are known."""
    from alignkit.data.records import prompt_text
    from alignkit.evaluate.ifeval import check_instructions

    known = None
    out: dict[str, list[dict[str, Any]]] = {}
    todo: list[tuple[str, str, str, list[dict[str, Any]]]] = []
    for i, row in enumerate(run.samples):
        key = sample_key(row, i)
        given = row.get("constraint_results")
        if isinstance(given, list) and all(isinstance(c, dict) and "id" in c for c in given):
            out[key] = [{"id": str(c["id"]), "strict": bool(c.get("strict")),
                         "loose": bool(c.get("loose", c.get("strict")))} for c in given]
            continue
        cons = row.get("constraints")
        if not isinstance(cons, list):
            if known is None:
                known = _prompt_constraints(run)
            cons = known.get(str(row["id"])) if "id" in row else None
        if cons and isinstance(row.get("completion"), str):
            todo.append((key, prompt_text(row.get("prompt", "")), row["completion"], cons))
    if todo:
        strict, loose = check_instructions([t[1] for t in todo], [t[2] for t in todo],
                                           [[c["id"] for c in t[3]] for t in todo],
                                           [[c.get("kwargs", {}) or {} for c in t[3]] for t in todo])
        for (key, _, _, cons), s, lo in zip(todo, strict, loose, strict=True):
            out[key] = [{"id": c["id"], "strict": a, "loose": b} for c, a, b in zip(cons, s, lo, strict=True)]
    return out


_CACHE: dict[tuple[str, int, int], dict[str, list[dict[str, Any]]]] = {}


def cached_constraint_results(run: Run) -> dict[str, list[dict[str, Any]]]:
    """`constraint_results`, computed once per version of the run's samples.jsonl (its mtime and size): checking
    every sample against its constraints on each page load would be the slowest part of the browser."""
    f = run.path / "samples.jsonl"
    if not f.is_file():
        return constraint_results(run)
    st = f.stat()
    key = (str(f.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = constraint_results(run)
    return _CACHE[key]


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def join_samples(runs: Sequence[Run], results: Sequence[dict[str, list[dict[str, Any]]]] | None = None
                 ) -> list[SampleRow]:
    """One row per prompt (in the first run's order, then prompts only later runs have), one cell per run."""
    results = results if results is not None else [cached_constraint_results(r) for r in runs]
    keyed = [{sample_key(row, i): row for i, row in enumerate(r.samples)} for r in runs]
    order: dict[str, Any] = {}
    for rows in keyed:
        for key, row in rows.items():
            order.setdefault(key, row.get("prompt"))
    out = []
    for key, prompt in order.items():
        cells: list[Cell | None] = []
        for run, rows, res in zip(runs, keyed, results, strict=True):
            row = rows.get(key)
            if row is None:
                cells.append(None)
                continue
            comp = row.get("completion")
            cells.append(Cell(run.name, comp if isinstance(comp, str) else json.dumps(comp), _number(row.get("reward")),
                              row.get("finish_reason") if isinstance(row.get("finish_reason"), str) else None,
                              row.get("compute") if isinstance(row.get("compute"), dict) else {},
                              res.get(key, [])))
        out.append(SampleRow(key, prompt, cells))
    return out


def filter_rows(rows: Sequence[SampleRow], *, constraint: str | None = None, status: str = "any",
                changed_only: bool = False) -> list[SampleRow]:
    """Rows with a constraint of that type (`constraint`, an id such as `punctuation:no_comma` or its prefix
    `punctuation`); where some run passed every constraint (`passed`) or some run failed one (`failed`); whose
    completions differ between the runs (`changed_only`)."""
    if status not in STATUSES:
        from alignkit.errors import DataError

        raise DataError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    out = []
    for r in rows:
        if constraint and not any(t == constraint or t.split(":", 1)[0] == constraint for t in r.constraint_types):
            continue
        verdicts = [c.passed for c in r.cells if c is not None and c.passed is not None]
        if status == "passed" and True not in verdicts:
            continue
        if status == "failed" and False not in verdicts:
            continue
        if changed_only and not r.changed:
            continue
        out.append(r)
    return out
