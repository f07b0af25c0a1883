"""Probe sets and probe objectives for merge-coefficient search (spec wave2_selfalign_merge.md §5, [design] part).

Probe JSONL: one record per line tagged by `task`: `{"task": "sft", "prompt", "completion"}` or
`{"task": "dpo", "prompt", "chosen", "rejected"}` for the gradient mode; prompt-only rows (any `task`, optional
`constraints` / IFEval `instruction_id_list` + `kwargs`) for the reward grid. Balancing is the point of Self
Positioning (it removes the data-size bias), so `balanced` takes an equal number per task.

Gradient-mode loss L = (1/T) Σ_t ℓ_t over the probe's tasks, with
* ℓ_sft = mean-token NLL of the completions (tokens pooled over the task's records);
* ℓ_dpo = mean −log σ(β[(S_θ(y_w) − S_ref(y_w)) − (S_θ(y_l) − S_ref(y_l))]), π_ref fixed and precomputed once
  (the spec's π_ref = θ_SFT: by default the anchor of the last task vector).

The λ-gradient is autograd's ⟨∇_θ L, τ_j⟩. One caveat it inherits from PyTorch: an `nn.Embedding` with
`padding_idx` gives its padding row no lookup gradient, so if that row differs between checkpoints and the pad
token occurs in probe inputs (SmolLM2's pad is its chat end token), that small part of the derivative is omitted.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.data.readers.jsonl import iter_jsonl_rows
from alignkit.errors import ConfigError, DataError

TASK_KINDS = {"sft": "sft", "dpo": "pairwise"}


def read_probe(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by `task`, in file order; a row without `task` is an error with FILE:LINE."""
    path = Path(path)
    if not path.exists():
        raise DataError("probe file not found", source=str(path))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, row in iter_jsonl_rows(path):  # blank lines skipped; a bad line is a DataError naming FILE:LINE
        if isinstance(row, DataError):
            raise row
        if not isinstance(row.get("task"), str):
            raise DataError("each probe row needs a string `task` (e.g. sft, dpo, reward)", source=str(path),
                            line=i, field="task")
        groups[row["task"]].append({**row, "_line": i})
    if not groups:
        raise DataError("probe file is empty", source=str(path))
    return dict(groups)


def balanced(groups: Mapping[str, Sequence[Any]], per_task: int | None = None, seed: int = 0
             ) -> dict[str, list[Any]]:
    """An equal number from every task: min(per_task, smallest task size), drawn without replacement by seed."""
    if not groups:
        raise ConfigError("no probe tasks")
    n = min(len(v) for v in groups.values())
    if per_task is not None:
        n = min(n, per_task)
    if n == 0:
        raise ConfigError(f"a probe task is empty: sizes {({k: len(v) for k, v in groups.items()})}")
    rng = random.Random(seed)
    return {k: [v[i] for i in sorted(rng.sample(range(len(v)), n))] for k, v in sorted(groups.items())}


def _records(rows: Sequence[dict[str, Any]], task: str, source: str) -> list[Any]:
    from alignkit.data.parse import parse_record

    kind = TASK_KINDS[task]
    return [parse_record({k: v for k, v in r.items() if k not in ("task", "_line")}, kind, source=source,
                         line=r.get("_line")) for r in rows]


@dataclass
class _TaskBatch:
    task: str
    batch: Any
    ref: Tensor | None = None  # dpo: reference summed log-probs [B, 2]


class ProbeLoss:
    """L(θ) over a probe set as a function of a parameter dict (for `search.self_positioning`). The probe is
    tokenised and collated once; each call runs one forward per task through `functional_call`."""

    def __init__(self, model: Any, tokenizer: Any, groups: Mapping[str, Sequence[dict[str, Any]]], *,
                 beta: float = 0.1, reference: Mapping[str, Tensor] | None = None, max_length: int = 512,
                 source: str = "<probe>") -> None:
        from alignkit.train.batching import collate, tokenize_records
        from alignkit.train.logps import CompletionLogProbs

        unknown = sorted(set(groups) - set(TASK_KINDS))
        if unknown:
            raise ConfigError(f"gradient-mode probe tasks must be among {sorted(TASK_KINDS)}; got {unknown} "
                              "(prompt-only probes are for --method grid)")
        self.wrapper = CompletionLogProbs(model).eval()
        # Tied weights (embeddings = LM head) appear under both names in θ(λ); each module gets its own tensor
        # (`tie_weights=False`), both functions of λ, so the gradient reaches λ through both uses.
        self.names = set(model.state_dict())
        self.beta = beta
        pad = tokenizer.pad_token_id
        self.tasks: list[_TaskBatch] = []
        for task, rows in sorted(groups.items()):
            data = tokenize_records(_records(rows, task, source), TASK_KINDS[task], tokenizer, max_length=max_length)
            self.tasks.append(_TaskBatch(task, collate(data, list(range(len(data))), pad)))
        if any(t.task == "dpo" for t in self.tasks):
            if reference is None:
                raise ConfigError("a dpo probe needs reference parameters (π_ref)")
            with torch.no_grad():
                for t in self.tasks:
                    if t.task == "dpo":
                        t.ref = self._sums(dict(reference), t.batch).detach()

    def _seq(self, params: dict[str, Tensor], batch: Any) -> tuple[Tensor, Tensor]:
        from torch.func import functional_call

        full = {f"model.{k}": v for k, v in params.items() if k in self.names}
        sums, counts = functional_call(self.wrapper, full, (batch.input_ids, batch.attention_mask, batch.labels),
                                       strict=False, tie_weights=False)
        return sums, counts

    def _sums(self, params: dict[str, Tensor], batch: Any) -> Tensor:
        return batch.to_slots(self._seq(params, batch)[0])

    def per_task(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for t in self.tasks:
            sums, counts = self._seq(params, t.batch)
            if t.task == "sft":
                out["sft"] = -sums.sum() / counts.sum().clamp(min=1)
            else:
                s = t.batch.to_slots(sums)
                assert t.ref is not None
                margin = (s[:, 0] - t.ref[:, 0]) - (s[:, 1] - t.ref[:, 1])
                out["dpo"] = -F.logsigmoid(self.beta * margin).mean()
        return out

    def __call__(self, params: dict[str, Tensor]) -> Tensor:
        losses = self.per_task(params)
        return torch.stack(list(losses.values())).mean()


def probe_items(rows: Sequence[dict[str, Any]], source: str = "<probe>") -> list[Any]:
    """Prompt-only rows → build items (constraints and references kept) for reward scoring."""
    from alignkit.data.build.common import _ifeval_constraints, items_from_prompts
    from alignkit.data.parse import parse_record

    prompts = [_ifeval_constraints(parse_record({k: v for k, v in r.items() if k not in ("task", "_line")},
                                                "prompt", source=source, line=r.get("_line"))) for r in rows]
    return items_from_prompts(prompts)


class RewardProbe:
    """Mean Reward score of θ(λ)'s samples on probe prompts (any Reward: `csr`, an RM, a verifier). Sampling is
    seeded per call, so every grid point answers the same prompts under the same seed."""

    def __init__(self, model: Any, tokenizer: Any, items: Sequence[Any], reward: Any, *, reward_spec: str,
                 n: int = 1, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0,
                 batch_size: int = 16) -> None:
        self.model, self.tokenizer, self.items, self.reward = model, tokenizer, list(items), reward
        self.reward_spec = reward_spec
        self.n, self.max_new_tokens, self.temperature, self.seed = n, max_new_tokens, temperature, seed
        self.batch_size = batch_size

    def __call__(self, state: Mapping[str, Tensor]) -> dict[str, float]:
        from alignkit.data.build.common import SamplingSettings, sample_batch
        from alignkit.data.build.reward import score_items
        from alignkit.decode.hf import HFSampler

        self.model.load_state_dict(dict(state), strict=True)
        sampler = HFSampler(self.model, self.tokenizer)
        settings = SamplingSettings(n=self.n, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                    seed=self.seed)
        scores: list[float] = []
        for i in range(0, len(self.items), self.batch_size):
            chunk = self.items[i:i + self.batch_size]
            texts = [[s.text for s in row] for row in sample_batch(sampler, chunk, settings)]
            scores += [x for row in score_items(self.reward, chunk, texts) for x in row]
        return {self.reward_spec: sum(scores) / max(len(scores), 1)}
