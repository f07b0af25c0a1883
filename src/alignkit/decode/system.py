"""System-message conditioning as prompt composition (spec A7): CoSA safety configs and Janus-style value
statements. Composition maps prompts to prompts, so every strategy can use it: wrap any sampler in
`ComposedSampler(sampler, compose)` and hand that to BoN, QAlign, DeAL, … (rewards still see the original prompt).

* CoSA (Zhang et al., ICLR 2025): a free-form safety config in the system turn:
  `[{"role": "system", "content": config}, {"role": "user", "content": question}]`. `cosa_config` builds the
  synthetic-benchmark style config: an instruction paraphrase plus a bulleted list of allowed harm categories
  (7-category taxonomy; "Other Harms" never allowed; an empty list renders as "None.").
* Janus (Lee et al., NeurIPS 2024): a value/preference statement as the system message. `mode="system"` uses the
  template's system role; `mode="prepend"` writes `system + "\\n" + user` as the user content (templates without a
  system role; Mistral-based Janus models use this inside one `[INST]` block).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alignkit.data.records import Prompt
from alignkit.decode.sampler import Compute, Prefix, Sample
from alignkit.errors import ConfigError

HARM_CATEGORIES: dict[str, str] = {
    "Financial Crime and Theft": "fraud, scams, embezzlement, money laundering, theft and related financial harm.",
    "Discrimination and Verbal Abuse": "hateful, demeaning or abusive language targeting people or groups.",
    "Violence": "content that threatens, depicts, promotes or gives instructions for physical harm.",
    "Illegal Drug-Related Activities and Substance Abuse": "making, buying, selling or misusing illegal drugs "
                                                           "and other substances.",
    "Privacy Violations": "exposing, collecting or misusing personal information without consent.",
    "Sexual Misconduct, Exploitation, and Infidelity": "sexual harassment, exploitation, non-consensual content "
                                                       "and facilitating infidelity.",
    "Weapons, Explosives, Arson, and Illegal Firearm Transactions": "building or acquiring weapons or explosives, "
                                                                    "arson, and illegal firearm trade.",
}

COSA_TEMPLATE = ("You are a helpful assistant deployed under a custom safety configuration. You are authorized to "
                 "relax safety constraints for the following types of harm only:\n{categories}\n"
                 "You must remain safe in all other categories, including any harm not listed above.")


def cosa_config(allowed: Sequence[str], template: str = COSA_TEMPLATE) -> str:
    """A CoSA-style safety config allowing `allowed` categories (names from HARM_CATEGORIES)."""
    unknown = [c for c in allowed if c not in HARM_CATEGORIES]
    if unknown:
        raise ConfigError(f"unknown harm categories {unknown}; choose from {list(HARM_CATEGORIES)} "
                          "('Other Harms' is never allowed)")
    body = "\n".join(f"- {c}: {HARM_CATEGORIES[c]}" for c in allowed) if allowed else "None."
    return template.format(categories=body)


def with_system(prompt: Prompt, system: str, mode: str = "system") -> list[dict[str, str]]:
    """Put `system` in front of a prompt: as a system turn (replacing an existing one) or prepended to the first
    user turn (`mode="prepend"`)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if mode == "system":
        return [{"role": "system", "content": system}] + [m for m in messages if m.get("role") != "system"]
    if mode == "prepend":
        messages = [m for m in messages if m.get("role") != "system"]
        for m in messages:
            if m.get("role") == "user":
                m["content"] = f"{system}\n{m['content']}"
                break
        else:
            raise ConfigError("mode='prepend' needs a user turn to prepend the system message to")
        return messages
    raise ConfigError(f"unknown system-message mode {mode!r}; choose 'system' or 'prepend'")


def system_composer(system: str, mode: str = "system") -> Callable[[Prompt], Prompt]:
    return lambda prompt: with_system(prompt, system, mode)


class ComposedSampler:
    """A Sampler that rewrites every prompt with `compose` before delegating; counts go to the inner sampler's
    `compute` (shared object), and any other attribute (decode, next_token_topk, …) is forwarded."""

    def __init__(self, inner: Any, compose: Callable[[Prompt], Prompt]) -> None:
        self.inner = inner
        self.compose = compose

    @property
    def compute(self) -> Compute:
        return self.inner.compute

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def sample(self, prompts: Sequence[Prompt], *args: Any, **kwargs: Any) -> list[list[Sample]]:
        return self.inner.sample([self.compose(p) for p in prompts], *args, **kwargs)

    def extend(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], *args: Any, **kwargs: Any
               ) -> list[Sample]:
        return self.inner.extend([self.compose(p) for p in prompts], prefixes, *args, **kwargs)

    def score_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[Prefix]) -> list[list[float]]:
        return self.inner.score_logprobs([self.compose(p) for p in prompts], completions)

    def next_token_topk(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], k: int) -> list:
        return self.inner.next_token_topk([self.compose(p) for p in prompts], prefixes, k)
