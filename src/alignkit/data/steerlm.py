"""SteerLM attribute conditioning (spec wave2_selfalign_merge.md §7; Dong et al. 2023, SteerLM; Wang et al. 2024,
HelpSteer2 / SteerLM 2.0; code NVIDIA/NeMo-Aligner `examples/nlp/data/steerlm/common.py`, `SteerLM2Dataset`).

* The attribute string: `"helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:1"`, the five HelpSteer2
  attributes in this fixed order, OpenAssistant attributes (quality, toxicity, humor, creativity) first when
  present, any other attribute after them in name order; values clipped to [0, 4] and rounded to the nearest
  integer (the code's `attribute_annotate.py`).
* Where it goes: NeMo puts it after the assistant header behind a label token; with HF chat templates alignkit
  appends it to the system message as `Attributes: …` (spec [design]), a system message being added when the
  prompt has none. The string is part of the prompt, so it is masked from the loss, and the same slot is used at
  train and inference time.
* SteerLM v1 (`steerlm_sft`): scored records (prompt, completion, attributes) → SFT records on the conditioned
  prompt, high- and low-quality alike (the model learns the conditional).
* SteerLM 2.0 target weights: log w̃_i = log P(a|x,y_i) + log P(y_i|x) − log Q'(y_i|a,x) (`steerlm2_log_weight`),
  with log P(a|x,y) from independent discretised Gaussians over {0..4} around the attribute model's predictions
  (`attribute_log_likelihood`, σ = 1: alignkit's default for a choice the docs leave open, spec [uncertain]).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from alignkit.data.records import Prompt, ScoredExample, SFTExample
from alignkit.errors import ConfigError

OASST_ATTRIBUTES = ("quality", "toxicity", "humor", "creativity")
HELPSTEER2_ORDER = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
ATTRIBUTE_RANGE = (0, 4)
SYSTEM_LABEL = "Attributes: "


def _order(names: Sequence[str]) -> list[str]:
    known = [n for n in (*OASST_ATTRIBUTES, *HELPSTEER2_ORDER) if n in names]
    return known + sorted(n for n in names if n not in known)


def attribute_string(attributes: Mapping[str, float], *, round_values: bool = True) -> str:
    """`name:value,...` in SteerLM's order, values clipped to [0, 4] and rounded (spec §7, v1 steps 1–2)."""
    lo, hi = ATTRIBUTE_RANGE
    parts = []
    for name in _order(list(attributes)):
        v = min(max(float(attributes[name]), lo), hi)
        parts.append(f"{name}:{int(math.floor(v + 0.5)) if round_values else v:g}")
    return ",".join(parts)


def parse_attribute_string(text: str) -> dict[str, float]:
    """`name:value,...` (SteerLM's form; `name=value` is accepted too, as typed on a command line) → dict."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        sep = ":" if ":" in part else "="
        name, found, value = part.partition(sep)
        if not found or not name.strip():
            raise ValueError(f"attribute {part!r} is not name:value")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"attribute {part!r}: {value.strip()!r} is not a number") from None
    return out


def requested_attributes(text: str, what: str = "--attributes") -> str:
    """An attribute request typed by a user (inference time) as the canonical string the model was trained on.

    Training labels are clipped to [0, 4] (spec §7); a request outside that range or that is not a whole number
    is an error here instead, since the model never saw such a value."""
    try:
        attrs = parse_attribute_string(text)
    except ValueError as e:
        raise ConfigError(f"{what}: {e} (e.g. helpfulness:4,verbosity:1)") from None
    if not attrs:
        raise ConfigError(f"{what} is empty (e.g. helpfulness:4,verbosity:1)")
    lo, hi = ATTRIBUTE_RANGE
    bad = {k: v for k, v in attrs.items() if not (lo <= v <= hi) or v != int(v)}
    if bad:
        raise ConfigError(f"{what}: {bad} outside the trained values (whole numbers {lo}..{hi})")
    return attribute_string(attrs)


def with_attributes(prompt: Prompt, attributes: Mapping[str, float] | str) -> list[dict[str, str]]:
    """The prompt as chat messages whose system message ends with `Attributes: …` (one is added if absent;
    an earlier attribute line is replaced, so conditioning twice does not stack)."""
    line = SYSTEM_LABEL + (attributes if isinstance(attributes, str) else attribute_string(attributes))
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if messages and messages[0].get("role") == "system":
        body = re.sub(r"(?:\n\n)?Attributes: [^\n]*$", "", messages[0]["content"])
        messages[0]["content"] = f"{body}\n\n{line}" if body else line
    else:
        messages.insert(0, {"role": "system", "content": line})
    return messages


def steerlm_sft(records: Sequence[ScoredExample], attributes: Sequence[str] | None = None) -> list[SFTExample]:
    """SteerLM v1 training data: each scored record as SFT on its attribute-conditioned prompt.

    `attributes` restricts (and must all be present in) each record's attributes; None keeps them all."""
    out = []
    for i, r in enumerate(records):
        attrs = dict(r.attributes)
        if attributes is not None:
            missing = [a for a in attributes if a not in attrs]
            if missing:
                raise ValueError(f"record {i}: missing attributes {missing} (has {sorted(attrs)})")
            attrs = {a: attrs[a] for a in attributes}
        cond = attribute_string(attrs)
        out.append(SFTExample(with_attributes(r.prompt, cond), r.completion,
                              {**r.metadata, "attributes": cond, "builder": "steerlm"}))
    return out


def attribute_log_likelihood(target: Sequence[float], predicted: Sequence[float], sigma: float = 1.0) -> float:
    """log P(a|x,y) = Σ_k [−(a_k − â_k)²/2σ² − log Σ_{j=0}^{4} exp(−(j − â_k)²/2σ²)] (spec §7, alignkit default).

    Worked: â = [3.6, 3.2, 3.9, 1.4, 1.1], a = [4, 4, 4, 2, 2] → −4.921577."""
    if len(target) != len(predicted):
        raise ValueError(f"{len(target)} target attributes for {len(predicted)} predictions")
    lo, hi = ATTRIBUTE_RANGE
    total = 0.0
    for a, p in zip(target, predicted, strict=True):
        z = [-((j - p) ** 2) / (2 * sigma**2) for j in range(lo, hi + 1)]
        m = max(z)
        total += -((a - p) ** 2) / (2 * sigma**2) - (m + math.log(sum(math.exp(v - m) for v in z)))
    return total


def steerlm2_log_weight(logp_attr: float, logp_sft: float, logp_init: float) -> float:
    """log w̃ = ℓ^A + ℓ^P − ℓ^{Q'}: the unnormalised log target weight of one sample (softmaxed per prompt)."""
    return float(logp_attr) + float(logp_sft) - float(logp_init)
