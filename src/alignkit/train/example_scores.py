"""Per-example values precomputed once before training and fed to the objective as `extras`.

- PoFT (spec §4.2, Fan et al. 2024): `aligned_avg_logp` = mean over the `aligned_models` of r_j = S_j(y|x)/T_j(y),
  each aligned model scoring with *its own tokenizer, chat template and length* (spec edge case). Each model's
  S_j is cached on disk exactly like reference log-probs (key = the data as that tokenizer encodes it + the
  model's fingerprint), so a second run reuses it. Completions are never dropped here (`keep_end`), so every
  training example gets a score.
- BCO + UDM (spec §2.2, Jung et al. 2024): `udm_weight` = the density ratio w(x) of a class-balanced logistic
  regression on mean-pooled prompt embeddings of the frozen `udm_model`, fitted on the training split's
  desirable vs undesirable prompts (`alignkit.objectives.udm`).
Values are indexed by source record and then mapped onto the tokenised examples (records dropped as too long
by the policy's truncation leave gaps).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import prompt_text
from alignkit.errors import ConfigError
from alignkit.models import load_model, model_fingerprint
from alignkit.objectives.base import LogProbs
from alignkit.train.batching import Batch, TokenizedData, tokenize_records
from alignkit.train.logps import CompletionLogProbs, SeqLogProbs
from alignkit.train.reference import cache_key, freeze, load_or_compute
from alignkit.train.step import ObjectiveStep


def _to_examples(per_record: Tensor, data: TokenizedData) -> Tensor:
    return per_record[torch.tensor([e.record for e in data.examples], dtype=torch.long)]


def aligned_avg_logp(cfg: Any, records: dict[str, list[Any]], splits: dict[str, TokenizedData], device: Any,
                     batch_size: int, accelerator: Any, log: Any) -> dict[str, Tensor]:
    """split → `[N]` mean over aligned models of their length-normalised log-prob of each example."""
    if not cfg.aligned_models:
        raise ConfigError("objective 'poft' needs aligned_models: a list of model specs that score each example "
                          "(e.g. --set 'aligned_models=[smollm2-135m-instruct]')")
    main = accelerator.is_main_process
    totals = {split: torch.zeros(len(recs)) for split, recs in records.items()}
    for i, spec in enumerate(cfg.aligned_models):
        model, tok = load_model(spec, seed=cfg.seed + 3 + i)
        model = freeze(model).to(device)
        runner = CompletionLogProbs(model)
        fp = model_fingerprint(model, spec)
        for split, recs in records.items():
            data = tokenize_records(recs, "sft", tok, max_length=cfg.max_length,
                                    max_prompt_length=cfg.max_prompt_length, truncation="keep_end",
                                    template=cfg.template, desc=f"tokenising for {spec}")
            key = cache_key(data, fp, cfg.template)
            pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
            with accelerator.main_process_first():  # the main process writes the cache, the others read it
                table = load_or_compute(runner, data, key, pad, batch_size, device, main=main, log=log)
            counts = torch.tensor([len(e.seqs[0].completion_ids) - (0 if e.seqs[0].prompt_ids else 1)
                                   for e in data.examples], dtype=torch.float32)
            totals[split] += table[:, 0] / counts.clamp(min=1)
        del runner, model
        log(f"poft: scored {sum(len(r) for r in records.values())} examples with aligned model {spec}")
    m = float(len(cfg.aligned_models))
    return {split: _to_examples(totals[split] / m, splits[split]) for split in records}


def udm_weights(cfg: Any, records: dict[str, list[Any]], splits: dict[str, TokenizedData], device: Any,
                log: Any) -> dict[str, Tensor]:
    """split → `[N]` UDM density-ratio weights w(x) (the objective applies them to undesirable items)."""
    from alignkit.objectives.udm import fit_udm_classifier, mean_pooled_embeddings

    model, tok = load_model(cfg.udm_model, seed=cfg.seed)
    model = freeze(model).to(device)
    emb = {split: mean_pooled_embeddings(model, tok, [prompt_text(r.prompt) for r in recs])
           for split, recs in records.items()}
    labels = torch.tensor([bool(r.label) for r in records["train"]])
    clf = fit_udm_classifier(emb["train"][labels], emb["train"][~labels])
    out = {split: _to_examples(clf.density_ratio(e).float(), splits[split]) for split, e in emb.items()}
    log(f"bco: UDM weights from {cfg.udm_model} (train mean {float(out['train'].mean()):.3f})")
    return out


class ExtrasStep(ObjectiveStep):
    """ObjectiveStep that adds precomputed per-example values (`extras[name][split]` `[N]`) to every batch."""

    def __init__(self, *args: Any, extras: dict[str, dict[str, Tensor]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.example_extras = extras or {}

    def extend(self, lp: LogProbs, batch: Batch, split: str, out: SeqLogProbs) -> None:
        super().extend(lp, batch, split, out)
        for name, tables in self.example_extras.items():
            lp.extras[name] = tables[split][batch.indices.cpu()].to(lp.policy.device)

