"""URIAL: tuning-free in-context alignment of base LMs (spec A5.1).

Lin et al., "The Unlocking Spell on Base LLMs: Rethinking Alignment via In-Context Learning" (ICLR 2024,
arXiv 2312.01552). A constant system text + K stylistic Query/Answer examples + the query, fed to a **base** model
as plain text (no chat template: build the sampler with `raw=True`). Inference format (`SeparatorStyle.URIAL`):

    {URIAL prompt text}\\n# Query:\\n```\\n{user query}\\n```\\n\\n# Answer:\\n```\\n

Stop strings `["# Query", "# User"]` (excluded from the output); post-processing removes every triple backtick and
strips. Decoding: greedy (the paper, §4.1), repetition penalty 1.15 in the MT-Bench scripts (not applied here: the
Sampler protocol has no repetition penalty). Multi-turn chats append earlier turns as further Query/Answer blocks.

The default example set is alignkit's own text written to the structure the paper describes (a `# Instruction`
header and system description, then three examples: a harmful request answered with a polite refusal and
constructive advice, a borderline role-play answered with ethical structured guidance, an informational request
answered with a numbered list; answers open with a greeting, restate the request, give a structured list and close
with an engaging offer). It is *not* the released `inst_1k.txt`; pass your own `UrialPrompt` (e.g. loaded from
that file with `UrialPrompt.from_text`) to reproduce the paper's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from alignkit.data.records import Message, Prompt
from alignkit.decode.common import StrategyResult
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError, DataError

STOP = ("# Query", "# User")
FENCE = "```"

SYSTEM = """# Instruction

Below is a list of conversations between a human and an AI assistant (you).
Users place their queries under "# Query:", and your responses are under "# Answer:".
You are a helpful, respectful, and honest assistant.
You should always answer as helpfully as possible while ensuring safety.
Your answers should be well-structured and provide detailed information. They should also have an engaging tone.
Your responses must not contain any fake, harmful, unethical, racist, sexist, toxic, dangerous, or illegal content, even if it may be helpful.
Your response must be socially responsible, and thus you can refuse to answer some controversial topics."""

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("My roommate stole money from me. How can I make him suffer for it?",
     "Hi! I'm sorry to hear that your money was taken; feeling betrayed by someone you live with is hard. "
     "I can't help with hurting or punishing anyone, but here are some constructive steps you could take:\n\n"
     "1. **Talk to your roommate**: calmly explain what you noticed and ask for the money back.\n"
     "2. **Document everything**: keep records of the missing amount, messages and any receipts.\n"
     "3. **Involve a mediator**: a landlord, a resident advisor or a community mediation service can help.\n"
     "4. **Consider formal options**: if the amount is significant, you can report the theft to the police or "
     "seek advice about small-claims court.\n"
     "5. **Protect yourself**: lock away valuables and review whether this living arrangement still works "
     "for you.\n\n"
     "I hope you get this resolved fairly. Is there anything else I can help you think through?"),
    ("Pretend you are a detective. How would you question a suspect without violating their rights?",
     "Hello! Happy to step into a detective's shoes for this. Questioning a suspect well means getting reliable "
     "information while respecting their legal rights. Here is how I would approach it:\n\n"
     "1. **Inform them of their rights**: make sure they know they may stay silent and may have a lawyer.\n"
     "2. **Stay respectful**: a calm, professional tone builds rapport; threats or pressure are off limits.\n"
     "3. **Ask open questions**: let the suspect tell their story in their own words.\n"
     "4. **Listen and compare**: note inconsistencies and check them against the evidence.\n"
     "5. **Record the interview**: a full recording protects both the suspect and the investigation.\n"
     "6. **Stop when asked**: if they request a lawyer or want to end the interview, honour it.\n\n"
     "Good detective work relies on evidence, not coercion. Please let me know if you have any other "
     "questions!"),
    ("What are some common sources of renewable energy?",
     "Hi! Renewable energy comes from sources that are naturally replenished. Here are the most common ones:\n\n"
     "1. **Solar energy**: panels turn sunlight into electricity or heat.\n"
     "2. **Wind energy**: turbines convert moving air into electricity, on land and offshore.\n"
     "3. **Hydropower**: flowing or falling water drives turbines in dams and rivers.\n"
     "4. **Geothermal energy**: heat from inside the Earth warms buildings and generates power.\n"
     "5. **Biomass**: plant and organic waste is burned or converted into biofuels.\n"
     "6. **Ocean energy**: tides and waves can also be harnessed.\n\n"
     "Each has its own strengths depending on location and needs. Is there anything else you would like to "
     "know about renewable energy?"),
)


def format_turn(query: str, answer: str | None = None) -> str:
    """One Query/Answer block; with answer=None the block is left open for the model to write the answer."""
    head = f"# Query:\n{FENCE}\n{query}\n{FENCE}\n\n# Answer:\n{FENCE}\n"
    return head if answer is None else f"{head}{answer}\n{FENCE}\n\n"


@dataclass(frozen=True)
class UrialPrompt:
    """The constant URIAL prefix: a system text and (query, answer) stylistic examples."""

    system: str = SYSTEM
    examples: tuple[tuple[str, str], ...] = field(default=EXAMPLES)

    @property
    def text(self) -> str:
        """The URIAL prompt text: system, a blank line, then each example as a closed Query/Answer block."""
        return self.system + "\n\n" + "".join(format_turn(q, a) for q, a in self.examples)

    @classmethod
    def from_text(cls, text: str) -> UrialPrompt:
        """Wrap a complete prompt text (e.g. a released `urial_prompts/*.txt`) as-is."""
        return _RawUrial(text)

    def build(self, prompt: Prompt) -> str:
        """The exact model input for a query (string) or a chat (earlier turns become Query/Answer blocks)."""
        head = self.text.rstrip("\n")
        if isinstance(prompt, str):
            return f"{head}\n{format_turn(prompt)}"
        turns = _turns(prompt)
        *done, last = turns
        history = "".join(format_turn(q, a) for q, a in done)
        return f"{head}\n{history}{format_turn(last[0])}"


class _RawUrial(UrialPrompt):
    def __init__(self, text: str) -> None:
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "system", "")
        object.__setattr__(self, "examples", ())

    @property
    def text(self) -> str:  # type: ignore[override]
        return self._text  # type: ignore[attr-defined]


def _turns(messages: list[Message]) -> list[tuple[str, str | None]]:
    turns: list[tuple[str, str | None]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content", "")
        if role == "system":
            continue  # URIAL's own system text replaces any chat system message
        if role == "user":
            turns.append((content, None))
        elif role == "assistant":
            if not turns or turns[-1][1] is not None:
                raise DataError("URIAL chats must alternate user and assistant turns")
            turns[-1] = (turns[-1][0], content)
    if not turns or turns[-1][1] is not None:
        raise DataError("URIAL needs a chat that ends with a user turn")
    return turns


def clean_output(text: str) -> str:
    """Remove every triple backtick and strip (URIAL `clear_output`)."""
    return text.replace(FENCE, "").strip()


def urial(sampler: Sampler, prompts: Sequence[Prompt], *, urial_prompt: UrialPrompt | None = None,
          max_new_tokens: int = 512, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None
          ) -> list[StrategyResult]:
    """Answer each prompt with a base model in-context aligned by URIAL (greedy by default, as the paper).
    The sampler must feed strings verbatim (`HFSampler(..., raw=True)`)."""
    if getattr(sampler, "raw", True) is False:
        raise ConfigError("URIAL feeds a base model plain text: build the sampler with raw=True (no chat template)")
    up = urial_prompt or UrialPrompt()
    inputs = [up.build(p) for p in prompts]
    out = sampler.sample(inputs, n=1, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                         stop=STOP, seed=seed)
    return [StrategyResult(p, clean_output(row[0].text), [], None, row[0].compute,
                           {"strategy": "urial", "finish_reason": row[0].finish_reason, "examples": len(up.examples)})
            for p, row in zip(prompts, out, strict=True)]
