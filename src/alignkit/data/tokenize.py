"""Tokenisation shared by training, sampling and scoring, so every stage sees the same tokens.

Rules (one place, so a prompt is encoded identically everywhere):
- A prompt that is a list of chat messages goes through the tokenizer's chat template with the generation prompt.
- A plain-string prompt goes through the chat template too, as one user message, when the tokenizer has a chat
  template and `template="auto"` (the instruct-model default); `template="never"` keeps it raw (base models,
  URIAL), `"always"` insists on a template. `"chat-only"` is TRL's rule: chat-message prompts get the template,
  plain strings stay raw (TRL's "standard" format), whatever the tokenizer has.
- An empty string prompt (an SFT row of TRL's language-modeling `text` column) is never templated: the text is
  tokenised on its own, with the tokenizer's special tokens, as TRL's SFTTrainer tokenises a `text` row.
- A completion is tokenised on its own (no special tokens) and EOS is appended, as TRL does, so labels cover the
  completion and its EOS only; the prompt positions are masked with -100.
- Over-long examples follow a truncation policy and every truncation or drop is counted, never silent:
  `keep_end` cuts the prompt from the left (keeping its end) down to `max_prompt_length` or what fits, then the
  completion from the right; `drop` rejects the example (counted as skipped).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from transformers import PreTrainedTokenizerBase

from alignkit.data.records import Prompt
from alignkit.errors import ConfigError, DataError

Template = Literal["auto", "always", "never", "chat-only"]
TEMPLATES = ("auto", "always", "never", "chat-only")
Truncation = Literal["keep_end", "drop"]
IGNORE_INDEX = -100


def prompt_messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def sampler_template(template: str = "auto", raw: bool = False) -> Template:
    """The rule a sampler renders prompts by: `template` as in training (`TrainConfig.template`, same default), so
    generation, evaluation and training see the same tokens; `raw` (feed plain strings verbatim, chat lists still
    templated: base models, URIAL) is the `chat-only` rule, or `never` when that is asked for."""
    if template not in TEMPLATES:
        raise ConfigError(f"template must be one of {list(TEMPLATES)}, got {template!r}")
    if not raw:
        return template  # type: ignore[return-value]
    if template == "always":
        raise ConfigError("raw prompts (plain strings verbatim) contradict template 'always'; use 'chat-only'")
    return "chat-only" if template == "auto" else template  # type: ignore[return-value]


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, template: Template = "auto") -> str:
    """The prompt text exactly as the model sees it (chat template applied per the rules above)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if template not in TEMPLATES:
        raise DataError(f"template must be one of {list(TEMPLATES)}, got {template!r}")
    raw_string = isinstance(prompt, str) and (prompt == "" or template == "chat-only"
                                              or (template == "auto" and not has_template))
    if template == "never" or raw_string:
        if not isinstance(prompt, str):
            raise DataError("a chat-message prompt needs a chat template; use template='auto'")
        return prompt
    if not has_template:
        raise DataError("this tokenizer has no chat template; pass plain-string prompts with template='never'")
    return tokenizer.apply_chat_template(prompt_messages(prompt), tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, template: Template = "auto") -> list[int]:
    text = render_prompt(tokenizer, prompt, template)
    # A rendered chat template already carries its special tokens (adding more would double the BOS); a raw
    # prompt gets the tokenizer's own (e.g. the BOS a base model expects).
    templated = text is not prompt
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def encode_completion(tokenizer: PreTrainedTokenizerBase, completion: str, add_eos: bool = True) -> list[int]:
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if add_eos and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids


@dataclass
class TruncationStats:
    """Counts of what truncation did, reported at the end of tokenisation."""

    examples: int = 0
    prompt_truncated: int = 0
    completion_truncated: int = 0
    dropped: int = 0
    reasons: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        return (f"{self.examples} sequences: {self.prompt_truncated} prompts and {self.completion_truncated} "
                f"completions truncated, {self.dropped} dropped")


class TooLong(DataError):
    """Raised under the `drop` policy; callers count it as a skipped record."""


@dataclass
class Encoded:
    prompt_ids: list[int]
    completion_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * len(self.prompt_ids) + self.completion_ids


def fit_lengths(prompt_ids: list[int], completion_ids: list[int], max_length: int | None,
                max_prompt_length: int | None, policy: Truncation, stats: TruncationStats | None = None
                ) -> Encoded:
    """Apply the truncation policy to one (prompt, completion) pair of token lists."""
    if stats is not None:
        stats.examples += 1
    p, c = list(prompt_ids), list(completion_ids)
    too_long = (max_length is not None and len(p) + len(c) > max_length) or (
        max_prompt_length is not None and len(p) > max_prompt_length)
    if not too_long:
        return Encoded(p, c)
    if policy == "drop":
        if stats is not None:
            stats.dropped += 1
            stats.reasons["too long"] += 1
        raise TooLong(f"example of {len(p)} prompt + {len(c)} completion tokens exceeds max_length={max_length}")
    if max_prompt_length is not None and len(p) > max_prompt_length:
        p = p[len(p) - max_prompt_length:]
        if stats is not None:
            stats.prompt_truncated += 1
    if max_length is not None and len(p) + len(c) > max_length:
        # Keep at least one completion token so the example still carries a training signal.
        room_for_prompt = max(max_length - len(c), min(len(p), max_length - 1))
        if room_for_prompt < len(p):
            p = p[len(p) - room_for_prompt:]
            if stats is not None and (max_prompt_length is None or len(prompt_ids) <= max_prompt_length):
                stats.prompt_truncated += 1
        if len(p) + len(c) > max_length:
            c = c[: max_length - len(p)]
            if stats is not None:
                stats.completion_truncated += 1
    return Encoded(p, c)


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, completion: str, *,
                   max_length: int | None = None, max_prompt_length: int | None = None,
                   policy: Truncation = "keep_end", template: Template = "auto",
                   stats: TruncationStats | None = None) -> Encoded:
    """Prompt + completion (+EOS) as token ids with prompt positions masked in `labels`."""
    return fit_lengths(encode_prompt(tokenizer, prompt, template), encode_completion(tokenizer, completion),
                       max_length, max_prompt_length, policy, stats)
