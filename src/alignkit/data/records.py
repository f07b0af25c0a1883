"""One frozen dataclass per data kind (DESIGN.md, protocol 1).

Every record has a `prompt` that is either a plain string or a list of chat messages
(`{"role": ..., "content": ...}`), and an optional `metadata` mapping (provenance, ids, categories) that readers
keep and writers write back. Column names follow TRL: `prompt`, `chosen`, `rejected`, `completion`, `label`,
plus `completions`/`scores` for ranked lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
Prompt = str | list[Message]


@dataclass(frozen=True)
class SFTExample:
    prompt: Prompt
    completion: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PairwiseExample:
    prompt: Prompt
    chosen: str
    rejected: str
    margin: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class UnpairedExample:
    prompt: Prompt
    completion: str
    label: bool
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ListwiseExample:
    prompt: Prompt
    completions: list[str]
    scores: list[float]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ScoredExample:
    prompt: Prompt
    completion: str
    attributes: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class JudgedExample:
    prompt: Prompt
    completion: str
    judgment: str
    score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PromptExample:
    """A prompt alone (for sampling, RL and evaluation), with optional references and verifier constraints."""

    prompt: Prompt
    references: list[str] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


Record = (SFTExample | PairwiseExample | UnpairedExample | ListwiseExample | ScoredExample | JudgedExample
          | PromptExample)

DATA_KINDS: dict[str, type] = {
    "sft": SFTExample,
    "pairwise": PairwiseExample,
    "unpaired": UnpairedExample,
    "listwise": ListwiseExample,
    "scored": ScoredExample,
    "judged": JudgedExample,
    "prompt": PromptExample,
}


def prompt_text(prompt: Prompt) -> str:
    """A plain-text view of a prompt (the last user message for chats), for rewards and verifiers."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt):
        if message.get("role") == "user":
            return message.get("content", "")
    return prompt[-1].get("content", "") if prompt else ""
