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
| `json`, `json_schema:FILE` | 1.0 iff valid JSON / valid against the JSON Schema in FILE |
| `rm:PATH` | a reward model directory (`RewardModel.load`) |
| `module:function`, `file.py:function` | a user function or Reward object, imported |
| `W*SPEC + W*SPEC` | weighted sum of the above (split on ` + `, spaces required) |

A user function taking `(prompts, completions, **context)` is batched; one taking `(prompt, completion, ...)` is
called per example. Its exceptions become RewardError naming the reward.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from alignkit.errors import RewardError
from alignkit.rewards.base import FunctionReward, Reward

SPEC_HELP = ("ifeval, ifeval_loose, csr, csr_loose, bleu, bleu:sacrebleu, chrf, chrf++, keyword:w1,w2,-w3, "
             "regex:PATTERN, length:MIN:MAX[:chars], json, json_schema:FILE, rm:PATH, module:function, "
             "file.py:function, and weighted sums 'W*SPEC + W*SPEC'")


def load_reward(spec: str | Reward) -> Reward:
    """Build a Reward from a spec string (see the module docstring); a Reward object passes through."""
    if not isinstance(spec, str):
        if callable(spec):
            return spec
        raise RewardError(f"a reward spec must be a string or a Reward; got {type(spec).__name__}")
    spec = spec.strip()
    if not spec:
        raise RewardError(f"empty reward spec; use one of: {SPEC_HELP}")
    if " + " in spec and not spec.startswith(("regex:", "keyword:")):
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
    }
    if not arg and name in simple:
        return simple[name]()
    if name == "bleu" and arg in ("", "bleuberi", "sacrebleu"):
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
    if name == "rm":
        from alignkit.rewards.model import RewardModel

        if not arg:
            raise RewardError("reward spec 'rm:PATH' needs a reward model directory")
        if (Path(arg) / "alignkit_pal.json").exists():  # a PAL-B RM from `alignkit reward train --objective pal`
            from alignkit.rewards.train import PALReward

            return PALReward.load(arg, name=spec)
        return RewardModel.load(arg, name=spec)
    if arg:
        return _user_function(spec, name, arg)
    raise RewardError(f"unknown reward spec {spec!r}; use one of: {SPEC_HELP}")


def _weighted(spec: str) -> Reward:
    from alignkit.rewards.combine import WeightedSum

    rewards, weights = [], []
    for term in spec.split(" + "):
        m = re.fullmatch(r"\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*(.+?)\s*", term)
        w, sub = (float(m.group(1)), m.group(2)) if m else (1.0, term.strip())
        rewards.append(load_reward(sub))
        weights.append(w)
    return WeightedSum(rewards, weights, name=spec)


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
