"""IFEval / IFBench accuracies from per-instruction booleans (spec testtime_eval.md B8).

Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models"; Pyatkin et al. 2025 (IFBench).
Input: for each prompt, one boolean per instruction, computed twice:
* strict: followed iff `response.strip()` is non-empty and the checker accepts the response;
* loose: followed iff the checker accepts any non-empty one of 8 variants of the response (`loose_variants`);
  each instruction may pass on a different variant, and the original is one of the variants, so strict ⇒ loose.
Aggregates, separately for strict and loose:
* prompt-level accuracy = fraction of prompts whose instructions are *all* followed;
* instruction-level accuracy = Σ followed / Σ instructions, pooled over prompts;
* per-type accuracy at tier0 (prefix before ':') and tier1 (full instruction id), when ids are given.
CIs: prompts are the resampling unit (instruction-level is a ratio of sums, bootstrapped per prompt).

The booleans come from `check_instructions`, which uses `alignkit.rewards.verifiers` (imported lazily, so this
module does not depend on it) and falls back to the `if_verifiable` checkers.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit.errors import DataError
from alignkit.evaluate.stats import Estimate, proportion_ci, ratio_ci


def loose_variants(response: str) -> list[str]:
    """The 8 loose-evaluation variants (B8): original; '*' removed; first line removed; last line removed; both
    removed; and the last three with '*' removed. Lines split on '\\n'; each variant stripped except the first two
    (as in the official scorer, which strips only the line-removed ones)."""
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    return [response, response.replace("*", ""), first, last, both,
            first.replace("*", ""), last.replace("*", ""), both.replace("*", "")]


@dataclass
class IFEvalResult:
    """The four headline numbers plus per-type breakdowns (type → (followed, total) counts, strict and loose)."""

    prompt_strict: Estimate
    prompt_loose: Estimate
    instruction_strict: Estimate
    instruction_loose: Estimate
    n_prompts: int
    n_instructions: int
    by_type_strict: dict[str, tuple[int, int]] = field(default_factory=dict)
    by_type_loose: dict[str, tuple[int, int]] = field(default_factory=dict)
    by_tier0_strict: dict[str, tuple[int, int]] = field(default_factory=dict)
    by_tier0_loose: dict[str, tuple[int, int]] = field(default_factory=dict)

    def headline(self) -> dict[str, Estimate]:
        return {"prompt_strict": self.prompt_strict, "prompt_loose": self.prompt_loose,
                "instruction_strict": self.instruction_strict, "instruction_loose": self.instruction_loose}

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: v.as_dict() for k, v in self.headline().items()}
        d.update(n_prompts=self.n_prompts, n_instructions=self.n_instructions)
        for name in ("by_type_strict", "by_type_loose", "by_tier0_strict", "by_tier0_loose"):
            d[name] = {k: {"followed": f, "total": t, "accuracy": f / t}
                       for k, (f, t) in getattr(self, name).items()}
        return d


def _check_rows(rows: Sequence[Sequence[bool]], name: str) -> list[list[bool]]:
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise DataError(f"{name}: expected a list (one entry per prompt) of lists of booleans")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence | np.ndarray):
            raise DataError(f"{name}[{i}]: expected a list of booleans (one per instruction); got {row!r}")
        if len(row) == 0:
            raise DataError(f"{name}[{i}]: a prompt with no instructions cannot be scored; drop it before "
                            "aggregating (IFEval prompts carry at least one instruction)")
        vals = []
        for j, v in enumerate(row):
            if not isinstance(v, bool | np.bool_) and v not in (0, 1):
                raise DataError(f"{name}[{i}][{j}]: expected a boolean; got {v!r}")
            vals.append(bool(v))
        out.append(vals)
    if not out:
        raise DataError(f"{name}: no prompts to aggregate")
    return out


def _by_type(rows: list[list[bool]], ids: list[list[str]], tier0: bool) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row, row_ids in zip(rows, ids, strict=True):
        for ok, iid in zip(row, row_ids, strict=True):
            key = iid.split(":", 1)[0] if tier0 else iid
            counts[key][0] += int(ok)
            counts[key][1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(counts.items())}


def ifeval_accuracy(strict: Sequence[Sequence[bool]], loose: Sequence[Sequence[bool]] | None = None,
                    instruction_ids: Sequence[Sequence[str]] | None = None, *, seed: int = 0,
                    n_resamples: int = 2000) -> IFEvalResult:
    """Prompt- and instruction-level accuracy, strict and loose, with bootstrap CIs over prompts.

    strict[i][j] / loose[i][j]: whether instruction j of prompt i was followed. `loose` defaults to `strict`
    (when only one kind of check was run). instruction_ids[i][j] (e.g. "keywords:existence") enables per-type
    breakdowns. Raises DataError on ragged or empty input, or if an instruction passes strict but fails loose
    (impossible under B8's definition, so it signals a bug upstream).
    """
    s = _check_rows(strict, "strict")
    lo = _check_rows(loose, "loose") if loose is not None else [list(r) for r in s]
    if len(lo) != len(s):
        raise DataError(f"strict has {len(s)} prompts but loose has {len(lo)}")
    for i, (rs, rl) in enumerate(zip(s, lo, strict=True)):
        if len(rs) != len(rl):
            raise DataError(f"prompt {i}: {len(rs)} strict results but {len(rl)} loose results")
        for j, (a, b) in enumerate(zip(rs, rl, strict=True)):
            if a and not b:
                raise DataError(f"prompt {i}, instruction {j}: passes strict but fails loose; loose checks include "
                                "the original response, so this cannot happen with B8's definition")
    ids: list[list[str]] | None = None
    if instruction_ids is not None:
        ids = [list(r) for r in instruction_ids]
        if len(ids) != len(s) or any(len(a) != len(b) for a, b in zip(ids, s, strict=True)):
            raise DataError("instruction_ids must have the same shape as the boolean results (one id per instruction)")
    kw = {"seed": seed, "n_resamples": n_resamples}
    n_instr = np.array([len(r) for r in s], dtype=float)
    res = IFEvalResult(
        prompt_strict=proportion_ci([all(r) for r in s], **kw),
        prompt_loose=proportion_ci([all(r) for r in lo], **kw),
        instruction_strict=ratio_ci([sum(r) for r in s], n_instr, **kw),
        instruction_loose=ratio_ci([sum(r) for r in lo], n_instr, **kw),
        n_prompts=len(s), n_instructions=int(n_instr.sum()))
    if ids is not None:
        res.by_type_strict, res.by_type_loose = _by_type(s, ids, False), _by_type(lo, ids, False)
        res.by_tier0_strict, res.by_tier0_loose = _by_type(s, ids, True), _by_type(lo, ids, True)
    return res


def check_instructions(prompts: Sequence[str], responses: Sequence[str],
                       instruction_ids: Sequence[Sequence[str]], kwargs: Sequence[Sequence[dict[str, Any]]],
                       benchmark: str = "ifeval") -> tuple[list[list[bool]], list[list[bool]]]:
    """Run the verifiers: returns (strict, loose) booleans ready for `ifeval_accuracy`.

    IFEval ids are checked by `alignkit.rewards.verifiers.check_constraints` (imported lazily); IFBench ids, or
    IFEval ids when that module is missing, by the `if_verifiable` registry. Unknown instruction ids raise an
    AlignkitError (RewardError or DataError), never a silent skip. An empty response fails every instruction.
    """
    n = len(prompts)
    if not (len(responses) == len(instruction_ids) == len(kwargs) == n):
        raise DataError(f"prompts ({n}), responses ({len(responses)}), instruction_ids ({len(instruction_ids)}) "
                        f"and kwargs ({len(kwargs)}) must have equal length")
    check = _verifier_function(benchmark)
    strict: list[list[bool]] = []
    loose: list[list[bool]] = []
    for i in range(n):
        if len(instruction_ids[i]) != len(kwargs[i]):
            raise DataError(f"prompt {i}: {len(instruction_ids[i])} instruction ids but {len(kwargs[i])} kwargs")
        if not responses[i].strip():
            strict.append([False] * len(instruction_ids[i]))
            loose.append([False] * len(instruction_ids[i]))
            continue
        pairs = check(prompts[i], responses[i], list(instruction_ids[i]), list(kwargs[i]), benchmark)
        strict.append([bool(a) for a, _ in pairs])
        loose.append([bool(b) for _, b in pairs])
    return strict, loose


def _verifier_function(benchmark: str) -> Any:
    """`alignkit.rewards.verifiers.check_constraints` for IFEval (it also makes the checkers work offline without
    NLTK data); the `if_verifiable` registry directly for IFBench or when the verifiers module is unavailable."""
    if benchmark == "ifeval":
        try:
            verifiers = importlib.import_module("alignkit.rewards.verifiers")
        except ImportError:
            verifiers = None
        if verifiers is not None and hasattr(verifiers, "check_constraints") and hasattr(verifiers, "Constraint"):
            def check(prompt: str, response: str, ids: list[str], kws: list[dict[str, Any]],
                      benchmark: str) -> list[tuple[bool, bool]]:
                cons = [verifiers.Constraint(iid, dict(kw or {})) for iid, kw in zip(ids, kws, strict=True)]
                return [(r["strict"], r["loose"]) for r in verifiers.check_constraints(prompt, response, cons)]

            return check
    return _if_verifiable_check


def _if_verifiable_check(prompt: str, response: str, instruction_ids: list[str], kwargs: list[dict[str, Any]],
                         benchmark: str) -> list[tuple[bool, bool]]:
    try:
        if benchmark == "ifeval":
            from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
        elif benchmark == "ifbench":
            from if_verifiable.ifbench.instructions_registry import INSTRUCTION_DICT
        else:
            raise DataError(f"unknown benchmark {benchmark!r}; expected 'ifeval' or 'ifbench'")
    except ImportError as e:
        raise DataError("instruction checking needs `alignkit.rewards.verifiers` or the `if-verifiable` package "
                        "(pip install if-verifiable)") from e
    variants = loose_variants(response)
    out = []
    for iid, kw in zip(instruction_ids, kwargs, strict=True):
        cls = INSTRUCTION_DICT.get(iid)
        if cls is None:
            raise DataError(f"unknown {benchmark} instruction id {iid!r}", field="instruction_id_list")
        checker = cls(iid)
        checker.build_description(**{k: v for k, v in (kw or {}).items() if v is not None})
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
        strict_ok = bool(response.strip() and checker.check_following(response))
        loose_ok = any(v.strip() and checker.check_following(v) for v in variants)
        out.append((strict_ok, bool(loose_ok)))
    return out
