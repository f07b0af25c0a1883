"""Decoding: the Sampler protocol, its backends (HF; vLLM optional) and the test-time alignment strategies.

Strategies (each returns one `StrategyResult` per prompt with its compute record): `best_of_n` (BoN/MV/WMV/MBR),
`qalign`, `deal`, `spec_reject`, `nudge`, `urial`, steering (`SteeredSampler`), system-message composition (`ComposedSampler`).
Heavy modules import lazily, so `import alignkit.decode` stays cheap.
"""

from __future__ import annotations

from typing import Any

from alignkit.decode.sampler import Compute, Sample, Sampler, TokenSampler, TopToken

_LAZY = {
    "HFSampler": "alignkit.decode.hf", "VLLMSampler": "alignkit.decode.vllm", "ToySampler": "alignkit.decode.toy",
    "StrategyResult": "alignkit.decode.common", "best_of_n": "alignkit.decode.bon", "qalign": "alignkit.decode.qalign",
    "deal": "alignkit.decode.deal", "spec_reject": "alignkit.decode.spec_reject", "nudge": "alignkit.decode.nudge", "urial": "alignkit.decode.urial",
    "UrialPrompt": "alignkit.decode.urial", "SteeringVector": "alignkit.decode.steer",
    "SteeredSampler": "alignkit.decode.steer", "extract_steering_vector": "alignkit.decode.steer",
    "steering": "alignkit.decode.steer", "ComposedSampler": "alignkit.decode.system",
    "with_system": "alignkit.decode.system", "cosa_config": "alignkit.decode.system",
    "run_strategy": "alignkit.decode.strategies", "sample_strategy": "alignkit.decode.strategies",
}

__all__ = ["Compute", "Sample", "Sampler", "TokenSampler", "TopToken", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alignkit.decode' has no attribute {name!r}")
