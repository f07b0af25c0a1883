"""Learning from language feedback (Align Anything LLF; spec wave2_feedback_safety.md §2; Ji et al. 2024, arXiv
2412.15838, code PKU-Alignment/align-anything `projects/lang_feedback/{base_gen,critique_gen,refine_gen}.py`).

Two stages:
1. Feedback model M_φ: SFT on (x, y, critique c) → `{"prompt": T_crit(x, y), "completion": c}`
   (`feedback_sft_records`; `alignkit data build --from feedback-model`, then `alignkit train --objective sft`).
2. Self-improving pairs (`LanguageFeedbackBuilder`, `alignkit data build --from language-feedback`): the policy
   samples y; M_φ (or any judge model) critiques it, c ~ M_φ(· | T_crit(x, y)); the *same policy* rewrites its
   answer in a three-turn conversation T_ref = [user x, assistant y, user c + rewrite instruction] → y*; the pair
   (chosen y*, rejected y) trains the policy with DPO (reference = the policy before this round). The refinement
   call is inference only; the policy never trains on critique text.
Filters (spec [uncertain], not in the code): drop if y* == y (`unchanged`), if y* hit the token limit
(`refinement_truncated`), or, with a reward given, if it prefers y over y* (`reward_prefers_original`). Sampling
defaults follow the code: temperature 1.0 for all three calls (repetition penalty 1.1 is not in the Sampler
protocol and is not applied).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.data.build.common import BuildItem, SamplingSettings, sample_batch
from alignkit.data.build.reward import score_items
from alignkit.data.build.runner import Outcome
from alignkit.data.records import Message, PairwiseExample, Prompt, SFTExample, prompt_text
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError, DataError
from alignkit.rewards.base import Reward

CRITIQUE_TEMPLATE = ("Here is a question and a response to it.\n\n[Question]\n{prompt}\n\n[Response]\n{response}\n\n"
                     "Write a critique of the response and suggestions to refine it.")
REFINE_INSTRUCTION = ("Here is feedback on your answer:\n\n{feedback}\n\nRewrite your answer according to the "
                      "critique and suggestions above. Reply with the improved answer only.")


def critique_prompt(prompt: Prompt, response: str, template: str = CRITIQUE_TEMPLATE) -> list[Message]:
    """T_crit(x, y): one user turn holding the prompt and the response behind short labels."""
    return [{"role": "user", "content": template.format(prompt=prompt_text(prompt), response=response)}]


def refine_prompt(prompt: Prompt, response: str, feedback: str, instruction: str = REFINE_INSTRUCTION
                  ) -> list[Message]:
    """T_ref: the conversation so far (x, then y as the assistant), then the critique with the rewrite request."""
    turns: list[Message] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return [*turns, {"role": "assistant", "content": response},
            {"role": "user", "content": instruction.format(feedback=feedback)}]


def feedback_sft_records(rows: Sequence[dict[str, Any]], template: str = CRITIQUE_TEMPLATE, source: str = "<rows>"
                         ) -> list[SFTExample]:
    """Feedback-model SFT data from `{"prompt", "response", "feedback"}` rows (`critique` also read for feedback)."""
    out = []
    for n, row in enumerate(rows, 1):
        for name in ("prompt", "response"):
            if not isinstance(row.get(name), (str, list)) or not row.get(name):
                raise DataError("missing or empty", source=source, line=n, field=name)
        fb = row.get("feedback", row.get("critique"))
        if not isinstance(fb, str) or not fb.strip():
            raise DataError("missing or empty critique text", source=source, line=n, field="feedback")
        meta = {k: v for k, v in row.items() if k not in ("prompt", "response", "feedback", "critique")}
        out.append(SFTExample(critique_prompt(row["prompt"], row["response"], template), fb,
                              {**meta, "builder": "feedback-model"}))
    return out


class LanguageFeedbackBuilder:
    """(x) → (x, chosen = refinement y*, rejected = original y, feedback c) pairs (module docstring)."""

    name = "language-feedback"

    def __init__(self, policy: Sampler, feedback_model: Sampler, sampling: SamplingSettings | None = None, *,
                 critique_max_new_tokens: int = 256, refine_max_new_tokens: int | None = None,
                 reward: Reward | None = None, round_index: int = 0, policy_name: str = "",
                 feedback_name: str = "", reward_spec: str = "") -> None:
        self.policy, self.feedback = policy, feedback_model
        self.sampling = sampling or SamplingSettings(n=1)
        if self.sampling.n != 1:
            raise ConfigError(f"language-feedback samples one answer per prompt (n=1), got n={self.sampling.n}")
        self.critique_max_new_tokens = critique_max_new_tokens
        self.refine_max_new_tokens = refine_max_new_tokens or 2 * self.sampling.max_new_tokens
        self.reward, self.round = reward, round_index
        self.names = {"policy": policy_name, "feedback_model": feedback_name, "reward": reward_spec}

    def settings(self) -> dict[str, Any]:
        return {**self.names, "sampling": self.sampling.as_dict(), "critique_max_new_tokens":
                self.critique_max_new_tokens, "refine_max_new_tokens": self.refine_max_new_tokens,
                "round": self.round}

    def _call(self, sampler: Sampler, items: Sequence[BuildItem], prompts: list[Any], max_new: int, tag: str
              ) -> list[Any]:
        staged = [BuildItem(f"{i.key}|{tag}", p, i.source) for i, p in zip(items, prompts, strict=True)]
        s = self.sampling
        settings = SamplingSettings(1, max_new, s.temperature, s.top_p, s.top_k, s.seed)
        return [row[0] for row in sample_batch(sampler, staged, settings)]

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        answers = [row[0] for row in sample_batch(self.policy, items, self.sampling)]
        ys = [a.text for a in answers]
        crit = self._call(self.feedback, items, [critique_prompt(i.prompt, y) for i, y in zip(items, ys, strict=True)],
                          self.critique_max_new_tokens, "critique")
        cs = [c.text.strip() for c in crit]
        refined = self._call(self.policy, items, [refine_prompt(i.prompt, y, c)
                                                  for i, y, c in zip(items, ys, cs, strict=True)],
                             self.refine_max_new_tokens, "refine")
        prefer: list[bool] = [True] * len(items)
        if self.reward is not None:
            # one batched call; score_items passes each item's constraints/references (csr, ifeval, bleu need them)
            both = score_items(self.reward, items, [[r.text, y] for r, y in zip(refined, ys, strict=True)])
            prefer = [star >= orig for star, orig in both]
        out = []
        for item, y, c, star, ok in zip(items, ys, cs, refined, prefer, strict=True):
            if not y.strip():
                out.append(Outcome(item.key, dropped="empty_answer"))
            elif not c:
                out.append(Outcome(item.key, dropped="empty_feedback"))
            elif star.text.strip() == y.strip() or not star.text.strip():
                out.append(Outcome(item.key, dropped="unchanged"))
            elif star.finish_reason == "length":
                out.append(Outcome(item.key, dropped="refinement_truncated"))
            elif not ok:
                out.append(Outcome(item.key, dropped="reward_prefers_original"))
            else:
                meta = {"builder": self.name, "feedback": c, "round": self.round,
                        "feedback_source": self.names["feedback_model"] or "feedback_model",
                        **{k: v for k, v in self.names.items() if v}}
                out.append(Outcome(item.key, [PairwiseExample(item.prompt, star.text, y, None, meta)]))
        return out
