"""Build a reward from a spec string: `load_reward(spec) -> Reward`.

| spec | reward |
|---|---|
| `ifeval`, `ifeval_loose` | 1.0 iff every IFEval constraint is followed (strict / loose) |
| `csr`, `csr_loose` | fraction of constraints followed (ACT's CSR) |
| `bleu`, `bleu:sacrebleu` | BLEUBERI BLEU (add-one on all orders) / sacrebleu's sentence BLEU, vs references |
| `chrf`, `chrf++` | chrF / chrF++ vs references |
| `keyword:w1,w2,-w3` | 1.0 iff w1 and w2 occur and w3 does not (whole words, case-insensitive) |
| `regex:PATTERN` | 1.0 iff PATTERN matches somewhere (`re.search`) |
| `length:MIN:MAX[:chars]` | 1.0 iff MIN ≤ words (or chars) ≤ MAX; either bound may be empty |
| `words` | the completion's word count (IFEval's `\\w+` runs): a verbosity proxy, e.g. for steerability checks |
| `json`, `json_schema:FILE` | 1.0 iff valid JSON / valid against the JSON Schema in FILE |
| `rm:PATH` | a reward model directory (`RewardModel.load`; a critique RM directory loads `CritiqueReward`) |
| `seq2seq:PATH[:B][:sum]` | token-level rewards of a seq2seq RM (`Seq2SeqReward`; variant B, summed instead of mean) |
| `module:function`, `file.py:function` | a user function or Reward object, imported |
| `W*SPEC + W*SPEC` | weighted sum of the above (split on ` + `, spaces required) |

A user function taking `(prompts, completions, **context)` is batched; one taking `(prompt, completion, ...)` is
called per example. Its exceptions become RewardError naming the reward.

Code rewards (`module:function`, `file.py:function`) import and run Python code. Given on the command line or from
Python they are trusted; a spec that comes from a config file (a YAML config, a recipe, a resumed run's
`config.yaml`) could have been written by anyone, so the CLI refuses it unless `--allow-code-rewards` is passed or
`ALIGNKIT_ALLOW_CODE_REWARDS=1` is set (`check_config_rewards`; issue #14 item 16, docs/rewards.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alignkit.errors import RewardError
from alignkit.rewards.base import FunctionReward, Reward

SPEC_HELP = ("ifeval, ifeval_loose, csr, csr_loose, bleu, bleu:sacrebleu, chrf, chrf++, keyword:w1,w2,-w3, "
             "regex:PATTERN, length:MIN:MAX[:chars], words, json, json_schema:FILE, rm:PATH, seq2seq:PATH, "
             "module:function, file.py:function, and weighted sums 'W*SPEC + W*SPEC'")
CODE_REWARDS_ENV = "ALIGNKIT_ALLOW_CODE_REWARDS"
ALLOW_CODE_REWARDS_HELP = (f"allow reward specs that import Python code (module:function, file.py:function) when "
                           f"they come from a config file; also {CODE_REWARDS_ENV}=1 (docs/rewards.md)")
_BLEU_METHODS = ("", "bleuberi", "sacrebleu")
_WITH_ARGUMENT = ("keyword", "regex", "length", "json_schema", "rm", "seq2seq")  # built-ins that take `NAME:ARG`


def load_reward(spec: str | Reward) -> Reward:
    """Build a Reward from a spec string (see the module docstring); a Reward object passes through."""
    if not isinstance(spec, str):
        if callable(spec):
            return spec
        raise RewardError(f"a reward spec must be a string or a Reward; got {type(spec).__name__}")
    spec = spec.strip()
    if not spec:
        raise RewardError(f"empty reward spec; use one of: {SPEC_HELP}")
    if _is_sum(spec):
        return _weighted(spec)
    name, _, arg = spec.partition(":")
    from alignkit.rewards import reference, verifiers

    simple: dict[str, Any] = {
        "ifeval": lambda: verifiers.ConstraintReward("all"),
        "ifeval_loose": lambda: verifiers.ConstraintReward("all", loose=True),
        "csr": lambda: verifiers.ConstraintReward("rate"),
        "csr_loose": lambda: verifiers.ConstraintReward("rate", loose=True),
        "chrf": lambda: reference.chrf_reward(),
        "chrf++": lambda: reference.chrf_reward(word_order=2),
        "json": lambda: verifiers.JsonReward(),
        "json_valid": lambda: verifiers.JsonReward(),
        "words": lambda: FunctionReward(lambda prompts, completions, **_: [float(verifiers.count_words(c))
                                                                            for c in completions], name="words"),
    }
    if not arg and name in simple:
        return simple[name]()
    if name == "bleu" and arg in _BLEU_METHODS:
        return reference.ReferenceReward("bleu", method=arg or "bleuberi",
                                         name="bleu" if arg in ("", "bleuberi") else "bleu:sacrebleu")
    if name == "keyword":
        words = [w.strip() for w in arg.split(",") if w.strip()]
        include = [w for w in words if not w.startswith("-")]
        exclude = [w[1:] for w in words if w.startswith("-") and len(w) > 1]
        return verifiers.KeywordReward(include, exclude, name=spec)
    if name == "regex":
        if not arg:
            raise RewardError("reward spec 'regex:PATTERN' needs a pattern")
        return verifiers.RegexReward(arg, name=spec)
    if name == "length":
        return _length(spec, arg)
    if name == "json_schema":
        return _json_schema(spec, arg)
    if name == "moral":  # moral:ENCODER_DIR[,prompt][,frames] (rewards/moral.py)
        from alignkit.rewards.moral import moral_reward

        return moral_reward(arg)
    if name == "rm":
        from alignkit.rewards.model import RewardModel

        if not arg:
            raise RewardError("reward spec 'rm:PATH' needs a reward model directory")
        if (Path(arg) / "alignkit_critique_rm.json").exists():  # `alignkit reward train --objective critique`
            from alignkit.rewards.critique import CritiqueReward

            return CritiqueReward.load(arg, name=spec)
        if (Path(arg) / "alignkit_pal.json").exists():  # a PAL-B RM from `alignkit reward train --objective pal`
            from alignkit.rewards.train import PALReward

            return PALReward.load(arg, name=spec)
        return RewardModel.load(arg, name=spec)
    if name == "seq2seq":
        from alignkit.rewards.seq2seq import Seq2SeqReward

        path, *opts = arg.split(":")
        if not path or any(o not in ("A", "B", "mean", "sum") for o in opts):
            raise RewardError(f"reward spec {spec!r}: use seq2seq:DIR, optionally :A|:B (variant) and :mean|:sum")
        return Seq2SeqReward.load(path, name=spec, variant="B" if "B" in opts else "A",
                                  reduce="sum" if "sum" in opts else "mean")
    if _is_code(name, arg):
        return _user_function(spec, name, arg)
    raise RewardError(f"unknown reward spec {spec!r}; use one of: {SPEC_HELP}")


def _is_sum(spec: str) -> bool:
    return " + " in spec and not spec.startswith(("regex:", "keyword:"))


def _is_code(name: str, arg: str) -> bool:
    """Whether `NAME:ARG` is a user import (the branch `load_reward` falls through to), not a built-in."""
    return bool(arg) and name not in _WITH_ARGUMENT and not (name == "bleu" and arg in _BLEU_METHODS)


def _terms(spec: str) -> list[tuple[float, str]]:
    """(weight, sub-spec) of each term of a weighted sum `W*SPEC + W*SPEC` (weight 1 where omitted)."""
    out = []
    for term in spec.split(" + "):
        m = re.fullmatch(r"\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*(.+?)\s*", term)
        out.append((float(m.group(1)), m.group(2)) if m else (1.0, term.strip()))
    return out


def _weighted(spec: str) -> Reward:
    from alignkit.rewards.combine import WeightedSum

    terms = _terms(spec)
    return WeightedSum([load_reward(sub) for _, sub in terms], [w for w, _ in terms], name=spec)


def code_reward_terms(spec: Any) -> list[str]:
    """The parts of a reward spec (or list of specs) that import Python code: `module:function` and
    `file.py:function`, also inside weighted sums. Built-ins (`regex:...`, `rm:DIR`, ...) are not code."""
    if isinstance(spec, (list, tuple)):
        return [t for s in spec for t in code_reward_terms(s)]
    if not isinstance(spec, str):
        return []  # a Reward object was built by Python code already
    spec = spec.strip()
    if _is_sum(spec):
        return [t for _, sub in _terms(spec) for t in code_reward_terms(sub)]
    name, _, arg = spec.partition(":")
    return [spec] if _is_code(name, arg) else []


def code_rewards_allowed(flag: bool = False) -> bool:
    """`--allow-code-rewards`, or the environment variable ALIGNKIT_ALLOW_CODE_REWARDS set to 1/true/yes/on."""
    return flag or os.environ.get(CODE_REWARDS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_config_rewards(specs: Any, command_line: Iterable[Any] = (), *, source: str | Path | None,
                         allow: bool = False) -> None:
    """Refuse code rewards that a config file supplied, unless allowed.

    `specs`: the reward spec(s) the resolved config will load; `command_line`: every value the user typed (flags and
    `--set` values; strings or lists of strings): a code term found there is trusted. Any other code term can only
    have come from the config file `source` (defaults are never code), so it needs `allow` or the environment
    variable: importing a module or file runs its top-level code before any reward is computed."""
    if source is None or code_rewards_allowed(allow):
        return
    typed = set(code_reward_terms([v for v in command_line if isinstance(v, (str, list, tuple))]))
    untrusted = [t for t in code_reward_terms(specs) if t not in typed]
    if untrusted:
        raise RewardError(
            f"{source}: reward spec {untrusted[0]!r} imports and runs Python code, and it comes from a config file; "
            f"pass --allow-code-rewards (or set {CODE_REWARDS_ENV}=1) if you trust {source} and the code it names, "
            "or give the spec on the command line (docs/rewards.md, 'Code rewards')")


def _length(spec: str, arg: str) -> Reward:
    from alignkit.rewards.verifiers import LengthReward

    parts = arg.split(":")
    if len(parts) not in (2, 3):
        raise RewardError(f"reward spec {spec!r}: use length:MIN:MAX or length:MIN:MAX:chars (a bound may be empty)")
    try:
        lo = int(parts[0]) if parts[0] else None
        hi = int(parts[1]) if parts[1] else None
    except ValueError:
        raise RewardError(f"reward spec {spec!r}: MIN and MAX must be integers") from None
    unit = parts[2] if len(parts) == 3 else "words"
    return LengthReward(lo, hi, unit, name=spec)


def _json_schema(spec: str, arg: str) -> Reward:
    from alignkit.rewards.verifiers import JsonReward

    path = Path(arg)
    if not path.is_file():
        raise RewardError(f"reward spec {spec!r}: schema file {arg!r} not found")
    try:
        schema = json.loads(path.read_text())
    except ValueError as e:
        raise RewardError(f"reward spec {spec!r}: {arg} is not valid JSON: {e}") from e
    return JsonReward(schema, name=spec)


def _import_target(spec: str, module: str, attr: str) -> Any:
    try:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise RewardError(f"reward {spec!r}: file {module} not found")
            mod_name = f"alignkit_user_reward_{path.stem}"
            mod_spec = importlib.util.spec_from_file_location(mod_name, path)
            assert mod_spec is not None and mod_spec.loader is not None
            mod = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_name] = mod
            mod_spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(module)
    except RewardError:
        raise
    except ModuleNotFoundError as e:
        raise RewardError(f"unknown reward spec {spec!r}: no module {module!r} ({e}); built-in specs: "
                          f"{SPEC_HELP}") from e
    except Exception as e:  # noqa: BLE001 - user code failed while importing
        raise RewardError(f"reward {spec!r}: importing {module} raised {type(e).__name__}: {e}") from e
    target: Any = mod
    for part in attr.split("."):
        if not hasattr(target, part):
            raise RewardError(f"reward {spec!r}: {module} has no attribute {attr!r}")
        target = getattr(target, part)
    return target


def _user_function(spec: str, module: str, attr: str) -> Reward:
    target = _import_target(spec, module, attr)
    if not callable(target):
        raise RewardError(f"reward {spec!r}: {attr} is not callable")
    if hasattr(target, "name") and not inspect.isfunction(target):
        return target  # already a Reward object
    try:
        params = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        params = []
    batched = not (params[:2] == ["prompt", "completion"])
    return FunctionReward(target, name=spec, batched=batched)
