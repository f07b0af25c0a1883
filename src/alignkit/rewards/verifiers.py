"""Programmatic verifier rewards: IFEval constraints (prompt-level `ifeval`, ACT's `csr`) and simple checks
(`regex`, `keyword`, `length`, `json_valid`, `json_schema`).

IFEval (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models"; spec testtime_eval.md B8):
each prompt carries constraints in the IFEval format, `instruction_id_list` + `kwargs`; here a constraint is
`{"id": "keywords:existence", "kwargs": {"keywords": ["cat"]}}`. The checkers come from the `if-verifiable` package
(a copy of Google's `instructions.py`).

* strict: followed iff `response.strip()` is non-empty and the checker passes on the response;
* loose: followed iff any non-empty of 8 variants passes (original, `*` removed, first/last/both lines removed, and
  those with `*` removed); each instruction may pass on a different variant.

Rewards: `ifeval` = 1.0 iff every constraint is followed (prompt-level accuracy), `csr` = fraction followed
(ACT's constraint satisfaction rate, Wang et al. 2024, spec objectives.md §9.2: CSR = (1/|C|) Σ_c v_c). Every
result's attributes hold the per-constraint outcomes and all four aggregates (strict/loose × all/rate).

Offline: NLTK's `punkt`/`punkt_tab` data cannot be downloaded here, so `install_offline_nltk()` points the IFEval
sentence counter and word tokenizer at NLTK's own Punkt algorithm (Kiss & Strunk 2006,
`nltk.tokenize.punkt.PunktSentenceTokenizer`) with parameters shipped here instead of the trained English model:
a list of common English abbreviations (titles, months, Latin and dotted forms: "Dr.", "Jan.", "p.m.", "e.g.")
and the orthographic evidence that frequent sentence starters ("The", "They", …) begin sentences, so an
abbreviation followed by one still ends a sentence ("… pears, etc. The rest"). Words are split by NLTK's
data-free Treebank tokenizer. Counts can still differ from the trained model on abbreviations outside the list
(the trained model learned ~150 from a news corpus). `langdetect` is seeded for determinism.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alignkit.data.records import Prompt, prompt_text
from alignkit.errors import RewardError
from alignkit.rewards.base import RewardResult, context_column, unpack_prompts

_OFFLINE_INSTALLED = False


# Punkt's English model learned its abbreviations from text; these are the common ones, lower case, without the
# final period (Punkt's `abbrev_types` convention). Words that often end a sentence ("no", "sat", "sun", "wed")
# are left out on purpose: listing them would glue two sentences together.
_ABBREVIATIONS = frozenset("""
mr mrs ms mx dr prof rev fr sr jr st gen col lt sgt capt cmdr adm gov sen rep hon pres messrs mme mlle esq
jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues thu thur thurs fri
a.m p.m e.g i.e cf vs etc al approx ca viz
u.s u.s.a u.k u.n e.u d.c n.y l.a ph.d m.d b.a m.a b.sc m.sc
inc corp co ltd bros assn dept univ est fig figs vol vols pp ed eds ch sec
ave blvd rd mt ft
""".split())

# Frequent sentence starters: Punkt splits after an abbreviation or initial when the next word is capitalised and
# is known to start sentences (its "orthographic context": seen capitalised at a sentence start, lower case
# inside one). Names are deliberately absent so "Mr. Jones" stays one sentence; "A" and "I" are absent too
# ("Dr. A. Smith").
_SENTENCE_STARTERS = frozenset("""
the this that these those it its he she they we you there then but and so however in on at an my our his her
their what when where why how if as after before today now yes not all some many most each every no also
thus therefore meanwhile finally first next later still yet while although because since for
""".split())


class _PunktSentenceTokenizer:
    """Stands in for NLTK's trained Punkt model: `tokenize(text) -> sentences`, with no data files."""

    _tokenizer: Any = None

    @classmethod
    def _punkt(cls) -> Any:
        if cls._tokenizer is None:
            from nltk.tokenize import punkt

            params = punkt.PunktParameters()
            params.abbrev_types = set(_ABBREVIATIONS)
            params.sent_starters = set(_SENTENCE_STARTERS)
            for word in _SENTENCE_STARTERS:
                params.ortho_context[word] = punkt._ORTHO_BEG_UC | punkt._ORTHO_MID_LC
            cls._tokenizer = punkt.PunktSentenceTokenizer(params)
        return cls._tokenizer

    def tokenize(self, text: str) -> list[str]:
        return [s for s in self._punkt().tokenize(text) if s.strip()]


class _OfflineNltk:
    """Delegates to `nltk` except `word_tokenize`/`sent_tokenize`, which need punkt_tab in NLTK; here sentences
    come from the offline Punkt splitter and words from the data-free Treebank tokenizer (what
    `nltk.word_tokenize` does after splitting)."""

    def __init__(self) -> None:
        import nltk
        from nltk.tokenize import NLTKWordTokenizer

        self._nltk = nltk
        self._words = NLTKWordTokenizer()

    def word_tokenize(self, text: str, language: str = "english", preserve_line: bool = False) -> list[str]:
        sentences = [text] if preserve_line else _PunktSentenceTokenizer().tokenize(text)
        return [tok for sent in sentences for tok in self._words.tokenize(sent)]

    def sent_tokenize(self, text: str, language: str = "english") -> list[str]:
        return _PunktSentenceTokenizer().tokenize(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nltk, name)


def install_offline_nltk() -> None:
    """Make the IFEval checkers work without NLTK data (idempotent; touches only the if-verifiable module)."""
    global _OFFLINE_INSTALLED
    if _OFFLINE_INSTALLED:
        return
    import langdetect
    from if_verifiable.ifeval import instructions_util

    instructions_util._get_sentence_tokenizer = lambda: _PunktSentenceTokenizer()
    instructions_util.nltk = _OfflineNltk()
    langdetect.DetectorFactory.seed = 0  # langdetect is random unless seeded
    _OFFLINE_INSTALLED = True


def instruction_registry() -> dict[str, Any]:
    """IFEval instruction id -> checker class (25 ids, e.g. `keywords:existence`, `length_constraints:number_words`)."""
    install_offline_nltk()
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return dict(INSTRUCTION_DICT)


@dataclass(frozen=True)
class Constraint:
    """One verifiable instruction: an IFEval id and its kwargs."""

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_constraints(obj: Any, where: str = "constraints") -> list[Constraint]:
    """Accept `[{"id": ..., "kwargs": {...}}, ...]`, IFEval's `{"instruction_id_list": [...], "kwargs": [...]}`,
    a list of bare ids, or None (no constraints)."""
    if obj is None:
        return []
    if isinstance(obj, dict) and "instruction_id_list" in obj:
        ids = list(obj["instruction_id_list"])
        kwargs = list(obj.get("kwargs") or [{} for _ in ids])
        if len(kwargs) != len(ids):
            raise RewardError(f"{where}: {len(ids)} instruction ids but {len(kwargs)} kwargs entries")
        return [Constraint(str(i), dict(k or {})) for i, k in zip(ids, kwargs, strict=True)]
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Sequence):
        raise RewardError(f"{where}: expected a list of {{'id', 'kwargs'}} objects, got {type(obj).__name__}")
    out = []
    for j, c in enumerate(obj):
        if isinstance(c, Constraint):
            out.append(c)
        elif isinstance(c, str):
            out.append(Constraint(c, {}))
        elif isinstance(c, dict) and ("id" in c or "instruction_id" in c):
            out.append(Constraint(str(c.get("id", c.get("instruction_id"))), dict(c.get("kwargs") or {})))
        else:
            raise RewardError(f"{where}[{j}]: expected {{'id': ..., 'kwargs': {{...}}}}, got {c!r}")
    return out


def _build_checker(c: Constraint, prompt: str) -> Any:
    registry = instruction_registry()
    cls = registry.get(c.id)
    if cls is None:
        raise RewardError(f"unknown IFEval instruction id {c.id!r}; known ids: {', '.join(sorted(registry))}")
    checker = cls(c.id)
    kwargs = {k: v for k, v in c.kwargs.items() if v is not None}  # HF IFEval rows pad unused kwargs with None
    try:
        checker.build_description(**kwargs)
    except TypeError as e:
        raise RewardError(f"constraint {c.id!r}: bad kwargs {sorted(kwargs)}: {e}") from e
    except ValueError as e:
        raise RewardError(f"constraint {c.id!r}: {e}") from e
    # IFEval fills any missing argument with a *random* value; a reward must be deterministic, so refuse instead.
    missing = [k for k in (checker.get_instruction_args_keys() or []) if k != "prompt" and k not in kwargs]
    if missing:
        raise RewardError(f"constraint {c.id!r} is missing kwargs {missing} (IFEval would pick random values)")
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=prompt)
    return checker


def loose_variants(response: str) -> list[str]:
    """IFEval's 8 loose variants: original, `*` removed, first/last/both lines removed, each also without `*`."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *cut, *(v.replace("*", "") for v in cut)]


def check_constraints(prompt: str, response: str, constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    """Per-constraint `{"id", "strict", "loose"}` for one response."""
    install_offline_nltk()
    variants = [v for v in loose_variants(response) if v.strip()]
    out = []
    for c in constraints:
        checker = _build_checker(c, prompt)
        strict = bool(response.strip()) and bool(checker.check_following(response))
        loose = strict or any(bool(checker.check_following(v)) for v in variants)
        out.append({"id": c.id, "strict": strict, "loose": loose})
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    s = sum(r["strict"] for r in results)
    l_ = sum(r["loose"] for r in results)
    return {
        "constraints": results, "n_constraints": n,
        "ifeval_strict": float(n > 0 and s == n), "ifeval_loose": float(n > 0 and l_ == n),
        "csr_strict": s / n if n else 0.0, "csr_loose": l_ / n if n else 0.0,
    }


def _strip_thinking(text: str) -> str:
    return text.split("</think>", 1)[-1].strip() if "</think>" in text else text


class ConstraintReward:
    """IFEval-style constraint reward. `aggregate="all"` gives `ifeval` (1.0 iff every constraint is followed),
    `aggregate="rate"` gives `csr` (fraction followed). `loose=True` uses IFEval's loose variants.

    Constraints per example come from `context["constraints"]` (one list per completion) or from prompt records.
    An example with no constraints scores 0.0 (as if-verifiable does; ACT leaves CSR undefined there) and is
    counted in `info["without_constraints"]`. Reasoning before `</think>` is dropped first (IFBench README).
    """

    def __init__(self, aggregate: str = "all", loose: bool = False, strip_thinking: bool = True,
                 name: str | None = None) -> None:
        if aggregate not in ("all", "rate"):
            raise RewardError(f"ConstraintReward aggregate must be 'all' or 'rate', got {aggregate!r}")
        self.aggregate, self.loose, self.strip_thinking = aggregate, loose, strip_thinking
        base = "ifeval" if aggregate == "all" else "csr"
        self.name = name or (f"{base}_loose" if loose else base)

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        prompts, context = unpack_prompts(prompts, context)
        column = context_column(context, "constraints", len(completions), self.name, required=True)
        assert column is not None
        key = ("ifeval" if self.aggregate == "all" else "csr") + ("_loose" if self.loose else "_strict")
        scores, attrs, empty = [], [], 0
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            cons = parse_constraints(column[i], where=f"reward '{self.name}': constraints of example {i}")
            text = _strip_thinking(c) if self.strip_thinking else c
            try:
                summary = summarize(check_constraints(prompt_text(p), text, cons))
            except RewardError as e:
                raise RewardError(f"reward '{self.name}', example {i}: {e}") from e
            empty += summary["n_constraints"] == 0
            scores.append(summary[key])
            attrs.append(summary)
        return RewardResult(scores, attrs, info={"without_constraints": empty})


def ifeval_reward(loose: bool = False) -> ConstraintReward:
    return ConstraintReward("all", loose=loose)


def csr_reward(loose: bool = False) -> ConstraintReward:
    return ConstraintReward("rate", loose=loose)


# ---------------------------------------------------------------------------------------------------------------
# Simple checks: 1.0 if the check passes, else 0.0.


class RegexReward:
    """1.0 iff `pattern` matches the completion (`mode`: search | fullmatch | match)."""

    def __init__(self, pattern: str, mode: str = "search", flags: int = 0, name: str | None = None) -> None:
        try:
            self.regex = re.compile(pattern, flags)
        except re.error as e:
            raise RewardError(f"reward 'regex': invalid pattern {pattern!r}: {e}") from e
        if mode not in ("search", "fullmatch", "match"):
            raise RewardError(f"reward 'regex': mode must be search, fullmatch or match, got {mode!r}")
        self.mode = mode
        self.name = name or f"regex:{pattern}"

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        scores, attrs = [], []
        for c in completions:
            m = getattr(self.regex, self.mode)(c)
            scores.append(1.0 if m else 0.0)
            attrs.append({"match": m.group(0) if m else None})
        return RewardResult(scores, attrs)


class KeywordReward:
    """1.0 iff every `include` keyword occurs and no `exclude` keyword occurs (whole words, case-insensitive by
    default). Attributes list which keywords were found; `keyword_rate` is the fraction of checks passed."""

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = (), case_sensitive: bool = False,
                 whole_word: bool = True, name: str | None = None) -> None:
        if not include and not exclude:
            raise RewardError("reward 'keyword' needs at least one keyword to include or exclude")
        self.include, self.exclude = list(include), list(exclude)
        flags = 0 if case_sensitive else re.IGNORECASE
        wrap = (lambda k: rf"(?<!\w){re.escape(k)}(?!\w)") if whole_word else re.escape
        self._patterns = {k: re.compile(wrap(k), flags) for k in self.include + self.exclude}
        self.name = name or "keyword:" + ",".join(self.include + [f"-{k}" for k in self.exclude])

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        scores, attrs = [], []
        for c in completions:
            found = {k: bool(p.search(c)) for k, p in self._patterns.items()}
            checks = [found[k] for k in self.include] + [not found[k] for k in self.exclude]
            scores.append(float(all(checks)))
            attrs.append({"found": found, "keyword_rate": sum(checks) / len(checks)})
        return RewardResult(scores, attrs)


def count_words(text: str) -> int:
    """Words as IFEval counts them (`\\w+` runs)."""
    return len(re.findall(r"\w+", text))


class LengthReward:
    """1.0 iff min ≤ length ≤ max (either bound may be None); `unit` is "words" (IFEval's `\\w+`) or "chars"."""

    def __init__(self, min: int | None = None, max: int | None = None, unit: str = "words",
                 name: str | None = None) -> None:
        if unit not in ("words", "chars"):
            raise RewardError(f"reward 'length': unit must be 'words' or 'chars', got {unit!r}")
        if min is not None and max is not None and min > max:
            raise RewardError(f"reward 'length': min {min} > max {max}")
        self.min, self.max, self.unit = min, max, unit
        lo = "" if min is None else str(min)
        hi = "" if max is None else str(max)
        self.name = name or f"length:{lo}:{hi}" + ("" if unit == "words" else f":{unit}")

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        scores, attrs = [], []
        for c in completions:
            n = count_words(c) if self.unit == "words" else len(c)
            ok = (self.min is None or n >= self.min) and (self.max is None or n <= self.max)
            scores.append(float(ok))
            attrs.append({self.unit: n})
        return RewardResult(scores, attrs)


def strip_code_fence(text: str) -> str:
    """Remove a surrounding ```json … ``` fence, as IFEval's json_format checker does."""
    t = text.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        if t.startswith(prefix):
            t = t[len(prefix):]
            break
    return t.removesuffix("```").strip()


class JsonReward:
    """1.0 iff the completion (code fence stripped) parses as JSON and, when `schema` is given, validates against
    it (JSON Schema through the `jsonschema` package). The error, if any, is in the attributes."""

    def __init__(self, schema: dict[str, Any] | None = None, name: str | None = None) -> None:
        self.schema = schema
        self._validator = None
        if schema is not None:
            import jsonschema

            try:
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
            except jsonschema.SchemaError as e:
                raise RewardError(f"reward 'json_schema': invalid schema: {e.message}") from e
            self._validator = cls(schema)
        self.name = name or ("json_schema" if schema is not None else "json_valid")

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str], **context: Any) -> RewardResult:
        scores, attrs = [], []
        for c in completions:
            error = None
            try:
                value = json.loads(strip_code_fence(c))
            except ValueError as e:
                error = f"invalid JSON: {e}"
            else:
                if self._validator is not None:
                    errs = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
                    if errs:
                        path = "/".join(str(p) for p in errs[0].path)
                        error = f"schema: {errs[0].message}" + (f" at /{path}" if path else "")
            scores.append(0.0 if error else 1.0)
            attrs.append({"error": error})
        return RewardResult(scores, attrs)
