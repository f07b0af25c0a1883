"""The `seq2seq-rm` builder: pairwise records → the seq2seq reward model's SFT data (spec wave2_feedback_safety.md
§3.1): per pair, a correction record T_src(x, rejected) → chosen and an identity record T_src(x, chosen) → chosen
(`alignkit.rewards.seq2seq.seq2seq_rm_records`). Train it with `alignkit train --objective sft --set
objective_args.per_sequence=true`, then use `seq2seq:RUN/final` as a reward (token-level rewards for online RL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.data.build.common import BuildItem, prompt_hash
from alignkit.data.build.runner import Outcome
from alignkit.data.records import PairwiseExample
from alignkit.rewards.seq2seq import SRC_TEMPLATE, seq2seq_rm_records


def pair_items(pairs: Sequence[PairwiseExample]) -> list[BuildItem]:
    """Pairs as build items, keyed by id or by a hash of prompt, chosen and rejected."""
    items = []
    for p in pairs:
        ident = p.metadata.get("id")
        key = f"id:{ident}" if ident not in (None, "") else "sha:" + prompt_hash(
            [p.prompt, p.chosen, p.rejected])  # type: ignore[list-item]
        items.append(BuildItem(key, p.prompt, {"record": p}))
    return items


class Seq2SeqRMBuilder:
    name = "seq2seq-rm"

    def __init__(self, template: str = SRC_TEMPLATE) -> None:
        self.template = template

    def settings(self) -> dict[str, Any]:
        return {"template": self.template}

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]:
        out = []
        for item in items:
            assert isinstance(item.source, dict)
            out.append(Outcome(item.key, list(seq2seq_rm_records([item.source["record"]], self.template))))
        return out
