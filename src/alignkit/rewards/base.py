"""The Reward protocol (DESIGN.md, protocol 3).

A reward is any callable `reward(prompts, completions) -> RewardResult`. Programmatic verifiers, reference
metrics, reward models, user functions and their combinations all look the same, so they are interchangeable in
data building, RL, test-time alignment and evaluation. `check_result` validates what a reward returned and names
the reward in every error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from alignkit.data.records import Prompt
from alignkit.errors import RewardError


@dataclass
class RewardResult:
    """Scores (one float per completion) and optional per-completion attributes (e.g. per-constraint results).

    A token reward (e.g. the seq2seq RM) also fills `token_scores`, one float per completion token, with `scores`
    their sequence reduction; it declares `token_level = True` to receive the policy's sampled token ids as
    `context["completion_token_ids"]`, so the values align 1:1 with those tokens (online RL, `rl.dense`).
    """

    scores: list[float]
    attributes: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    token_scores: list[list[float]] | None = None


@runtime_checkable
class Reward(Protocol):
    name: str

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        """Score completions[i] as a response to prompts[i]. `context` carries per-example extras such as
        `references` (list of lists of strings) or `constraints` (list of constraint lists)."""
        ...


def check_result(name: str, result: Any, n: int) -> RewardResult:
    """Validate a reward's output: a RewardResult (or plain sequence of numbers) of length n with finite scores."""
    if not isinstance(result, RewardResult):
        if isinstance(result, Sequence) and not isinstance(result, str):
            result = RewardResult(scores=list(result))
        else:
            raise RewardError(f"reward '{name}' returned {type(result).__name__}; expected RewardResult or a list of floats")
    if len(result.scores) != n:
        raise RewardError(f"reward '{name}' returned {len(result.scores)} scores for {n} completions")
    scores = []
    for i, s in enumerate(result.scores):
        try:
            f = float(s)
        except (TypeError, ValueError) as e:
            raise RewardError(f"reward '{name}' returned a non-numeric score {s!r} at index {i}") from e
        if not math.isfinite(f):
            raise RewardError(f"reward '{name}' returned a non-finite score ({f}) at index {i}")
        scores.append(f)
    result.scores = scores
    if result.attributes is not None and len(result.attributes) != n:
        raise RewardError(f"reward '{name}' returned {len(result.attributes)} attribute rows for {n} completions")
    if result.token_scores is not None:
        result.token_scores = _check_token_scores(name, result.token_scores, n)
    return result


def _check_token_scores(name: str, rows: Any, n: int) -> list[list[float]]:
    if isinstance(rows, str) or not isinstance(rows, Sequence) or len(rows) != n:
        raise RewardError(f"reward '{name}' returned token scores that are not one list per completion ({n})")
    out = []
    for i, row in enumerate(rows):
        try:
            vals = [float(v) for v in row]
        except (TypeError, ValueError) as e:
            raise RewardError(f"reward '{name}' returned non-numeric token scores for completion {i}") from e
        if not all(math.isfinite(v) for v in vals):
            raise RewardError(f"reward '{name}' returned a non-finite token score for completion {i}")
        out.append(vals)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared by every reward implementation (added with the rewards package; the protocol above is unchanged).


def reward_name(reward: Any) -> str:
    """The reward's `name`, or a readable fallback for plain callables."""
    return str(getattr(reward, "name", None) or getattr(reward, "__name__", None) or type(reward).__name__)


def unpack_prompts(prompts: Sequence[Any], context: dict[str, Any]) -> tuple[list[Prompt], dict[str, Any]]:
    """Accept prompts as plain prompts or as prompt records (`PromptExample` or dicts with a `prompt` key).

    Records may carry `constraints` and `references`; those become per-example context columns unless the caller
    passed the column explicitly (explicit context wins). Returns (plain prompts, context).
    """
    plain: list[Prompt] = []
    found: dict[str, list[Any]] = {"constraints": [], "references": []}
    any_record = False
    for p in prompts:
        if isinstance(p, (str, list)):
            plain.append(p)
            found["constraints"].append(None)
            found["references"].append(None)
            continue
        if isinstance(p, dict) and "prompt" in p:
            rec = p
        elif hasattr(p, "prompt"):
            rec = {k: getattr(p, k, None) for k in ("prompt", "constraints", "references")}
        else:
            raise RewardError(f"a prompt must be a string, a list of chat messages or a prompt record; got "
                              f"{type(p).__name__}")
        any_record = True
        plain.append(rec["prompt"])
        found["constraints"].append(rec.get("constraints") or None)
        found["references"].append(rec.get("references") or None)
    context = dict(context)
    if any_record:
        for key, column in found.items():
            if key not in context and any(v is not None for v in column):
                context[key] = column
    return plain, context


def context_column(context: dict[str, Any], key: str, n: int, reward: str, required: bool = False
                   ) -> list[Any] | None:
    """A per-example context column (one entry per completion), validated for length."""
    column = context.get(key)
    if column is None:
        if required:
            raise RewardError(f"reward '{reward}' needs context['{key}'] (one entry per completion)")
        return None
    if isinstance(column, (str, bytes)) or not isinstance(column, Sequence):
        raise RewardError(f"reward '{reward}': context['{key}'] must be a list with one entry per completion")
    if len(column) != n:
        raise RewardError(f"reward '{reward}': context['{key}'] has {len(column)} entries for {n} completions")
    return list(column)


def call_reward(reward: Any, prompts: Sequence[Any], completions: Sequence[str], **context: Any) -> RewardResult:
    """Call any reward safely: validate inputs, wrap foreign exceptions in RewardError naming the reward, and check
    the result with `check_result`. Combinators and callers use this instead of calling rewards directly."""
    name = reward_name(reward)
    if isinstance(completions, str):
        raise RewardError(f"reward '{name}': completions must be a list of strings, not one string")
    if len(prompts) != len(completions):
        raise RewardError(f"reward '{name}': {len(prompts)} prompts but {len(completions)} completions")
    try:
        result = reward(prompts, completions, **context)
    except RewardError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure inside user code is reported against the reward's name
        raise RewardError(f"reward '{name}' raised {type(e).__name__}: {e}") from e
    return check_result(name, result, len(completions))


class FunctionReward:
    """Wrap a plain function as a Reward.

    `batched=True`: `fn(prompts, completions, **context)` returns a RewardResult or a list of floats.
    `batched=False`: `fn(prompt, completion, **example_context)` returns a float (or (float, attributes dict)) and
    is called once per example with each per-example context column indexed.
    """

    def __init__(self, fn: Any, name: str | None = None, batched: bool = True) -> None:
        self.fn = fn
        self.name = name or reward_name(fn)
        self.batched = batched
        self._accepts = _accepted_keywords(fn)

    def _filter(self, context: dict[str, Any]) -> dict[str, Any]:
        # Context is shared by all rewards in a combination; pass a function only the keys it declares.
        return context if self._accepts is None else {k: v for k, v in context.items() if k in self._accepts}

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        context = self._filter(context)
        if self.batched:
            return call_reward_fn(self.name, self.fn, prompts, completions, context)
        scores: list[float] = []
        attrs: list[dict[str, Any]] = []
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            ctx = {k: v[i] for k, v in context.items() if isinstance(v, Sequence) and not isinstance(v, str)
                   and len(v) == len(completions)}
            try:
                out = self.fn(p, c, **ctx)
            except Exception as e:  # noqa: BLE001
                raise RewardError(f"reward '{self.name}' raised {type(e).__name__} on example {i}: {e}") from e
            if isinstance(out, tuple):
                out, extra = out
                attrs.append(dict(extra))
            else:
                attrs.append({})
            scores.append(out)
        return check_result(self.name, RewardResult(scores, attrs if any(attrs) else None), len(completions))


def _accepted_keywords(fn: Any) -> set[str] | None:
    """Keyword names `fn` accepts, or None when it takes **kwargs (or has no inspectable signature)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def call_reward_fn(name: str, fn: Any, prompts: Sequence[Prompt], completions: Sequence[str],
                   context: dict[str, Any]) -> RewardResult:
    try:
        out = fn(prompts, completions, **context)
    except RewardError:
        raise
    except Exception as e:  # noqa: BLE001
        raise RewardError(f"reward '{name}' raised {type(e).__name__}: {e}") from e
    return check_result(name, out, len(completions))
