"""Per-token "changed" indicators for DDPO (spec wave2_feedback_safety.md §1.2–§1.3, §1.7), fed to the objective
as `extras["token_weights"]` `[B, 2, T]` aligned with `token_policy`/`token_mask`.

Which tokens a correction changed is fixed by the data, so it is computed once per example before training:
* spans: a record whose metadata holds `chosen_spans` / `rejected_spans` (character offsets into each completion)
  marks the tokens whose offsets overlap a span (needs a fast tokenizer for offsets);
* token diff: otherwise the RLHF-V rule on the two completions' token ids (`alignkit.data.token_diff`).
`diff_mode` (objective argument) = `auto` (spans when present, else the diff), `spans` (required) or
`token_diff` (ignore spans). Pairs with no changed token, and (token diff only) pairs whose diff covers more than
`max_changed_fraction` of their tokens, carry no weights: DDPO reduces to DPO for them (spec §1.7), counted in the
log. The objective turns indicators c into weights w = 1 + (γ − 1)·c.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from alignkit.data.token_diff import changed_token_sets, check_spans, tokens_in_spans
from alignkit.errors import ConfigError, DataError
from alignkit.objectives.base import LogProbs
from alignkit.train.batching import Batch, TokenizedData, TokenizedExample
from alignkit.train.logps import SeqLogProbs
from alignkit.train.step import ObjectiveStep

DIFF_MODES = ("auto", "spans", "token_diff")


def _span_changed(tokenizer: Any, text: str, spans: list[tuple[int, int]], ids: list[int], where: str) -> set[int]:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{where}: character spans need a fast tokenizer (offsets); use diff_mode=token_diff")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(ids[: len(enc["input_ids"])]):
        raise DataError(f"{where}: the completion tokenises differently with offsets; use diff_mode=token_diff")
    return tokens_in_spans(enc["offset_mapping"], spans)


def example_indicators(ex: TokenizedExample, record: Any, tokenizer: Any, args: dict[str, Any],
                       counts: Counter) -> list[list[float]]:
    """[chosen, rejected] lists of 0/1 over each (possibly truncated) completion's tokens."""
    mode = args["diff_mode"]
    meta = getattr(record, "metadata", {}) or {}
    where = f"training record {ex.record}"
    has_spans = meta.get("chosen_spans") is not None or meta.get("rejected_spans") is not None
    if mode == "spans" and not has_spans:
        raise DataError(f"{where}: diff_mode=spans but the record has no chosen_spans/rejected_spans")
    ids_w, ids_l = ex.completion_ids[0], ex.completion_ids[1]
    if has_spans and mode != "token_diff":
        try:
            spans = [check_spans(meta.get(f"{side}_spans") or [], text, f"{side}_spans")
                     for side, text in (("chosen", record.chosen), ("rejected", record.rejected))]
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        cw = _span_changed(tokenizer, record.chosen, spans[0], ids_w, where)
        cl = _span_changed(tokenizer, record.rejected, spans[1], ids_l, where)
        counts["spans"] += 1
    else:
        cw, cl = changed_token_sets(ids_l, ids_w, min_match_size=int(args["min_match_size"]),
                                    autojunk=bool(args["autojunk"]),
                                    weight_pure_insertions=bool(args["weight_pure_insertions"]))
        counts["token_diff"] += 1
        if (len(cw) + len(cl)) > float(args["max_changed_fraction"]) * (len(ids_w) + len(ids_l)):
            counts["not_a_correction"] += 1
            cw, cl = set(), set()
    if not cw and not cl:
        counts["no_changed_tokens"] += 1
    return [[1.0 if t in changed else 0.0 for t in range(len(seq.completion_ids))]
            for changed, seq in ((cw, ex.seqs[0]), (cl, ex.seqs[1]))]


def indicator_tables(args: dict[str, Any], tokenizer: Any, splits: dict[str, TokenizedData],
                     records: dict[str, list[Any]], log: Any) -> dict[str, list[list[list[float]]]]:
    if args["diff_mode"] not in DIFF_MODES:
        raise ConfigError(f"objective 'ddpo': diff_mode must be one of {DIFF_MODES}, got {args['diff_mode']!r}")
    tables = {}
    for split, data in splits.items():
        counts: Counter = Counter()
        tables[split] = [example_indicators(ex, records[split][ex.record], tokenizer, args, counts)
                         for ex in data.examples]
        log(f"ddpo {split}: {counts['spans']} pairs by spans, {counts['token_diff']} by token diff; "
            f"{counts['no_changed_tokens']} with no changed token (plain DPO), of which "
            f"{counts['not_a_correction']} changed more than {args['max_changed_fraction']:.0%} of their tokens")
    return tables


class TokenWeightStep(ObjectiveStep):
    """ObjectiveStep that adds `extras["token_weights"]` (changed-token indicators, `[B, K, T]`)."""

    def __init__(self, *args: Any, splits: dict[str, TokenizedData], tables: dict[str, list[list[list[float]]]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.splits, self.tables = splits, tables

    def extend(self, lp: LogProbs, batch: Batch, split: str, out: SeqLogProbs) -> None:
        super().extend(lp, batch, split, out)
        data, table = self.splits[split], self.tables[split]
        full = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        n = 0
        for i in batch.indices.tolist():  # the collation order: example by example, item by item
            for k, seq in enumerate(data.examples[i].seqs):
                p = len(seq.prompt_ids)
                full[n, p: p + len(seq.completion_ids)] = torch.tensor(table[i][k])
                n += 1
        # Label position j is predicted at column j − 1 (the kernel's shift).
        lp.extras["token_weights"] = self._tokens(batch, full[:, 1:].to(lp.policy.device))  # type: ignore[assignment]


def ddpo_args(spec_defaults: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    keys = ("diff_mode", "min_match_size", "autojunk", "weight_pure_insertions", "max_changed_fraction")
    merged = {**spec_defaults, **hparams}
    return {k: merged[k] for k in keys}

