"""Preference data: records, readers/validation, converters, tokenisation, builders."""

from alignkit.data.records import (
    DATA_KINDS,
    JudgedExample,
    ListwiseExample,
    Message,
    PairwiseExample,
    Prompt,
    Record,
    ScoredExample,
    SFTExample,
    UnpairedExample,
)

__all__ = [
    "DATA_KINDS", "JudgedExample", "ListwiseExample", "Message", "PairwiseExample", "Prompt", "Record",
    "ScoredExample", "SFTExample", "UnpairedExample",
]
