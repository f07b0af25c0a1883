"""The final evaluation of a trained reward model (`eval.json`): pairwise accuracy by task/user, ECE/ACE/MCE and a
reliability diagram; per-attribute MSE for regression heads; for remodetect, the pairs are (LLM, human) texts and
the report adds the detection AUROC.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from alignkit.rewards.training.config import RewardTrainConfig
from alignkit.rewards.training.data import RMData, collate_rm
from alignkit.rewards.training.module import RMTrainModule


@torch.no_grad()
def predict(module: RMTrainModule, data: RMData, pad_id: int, batch_size: int, device: Any) -> Tensor:
    """Pairwise data: `[N, 2]` (chosen, rejected) rewards; regression: `[N, A]` attribute predictions."""
    was = module.training
    module.eval()
    outs = []
    try:
        for s in range(0, len(data), batch_size):
            batch = collate_rm(data, range(s, min(s + batch_size, len(data))), pad_id).to(device)
            out = module(batch.input_ids, batch.attention_mask, batch.n_pairs, batch.groups)
            if "pal_logits" in out:
                outs.append(out["pal_logits"].float().cpu())
            elif data.objective == "regression":
                outs.append(out["scores"].float().cpu())
            else:
                b = batch.n_pairs
                outs.append(torch.stack([out["scores"][:b, 0], out["scores"][b:2 * b, 0]], dim=-1).float().cpu())
    finally:
        module.train(was)
    return torch.cat(outs)


def _pair_report(chosen: list[float], rejected: list[float], categories: list[str] | None, bins: int,
                 run_dir: Path, title: str) -> dict[str, Any]:
    from alignkit.rewards.evaluate import (
        calibration_errors,
        pairwise_accuracy,
        pairwise_probabilities,
        reliability_diagram,
    )

    report: dict[str, Any] = dict(pairwise_accuracy(chosen, rejected, categories))
    probs, labels = pairwise_probabilities(chosen, rejected)
    for b in sorted({5, 10, 20, bins}):
        cal = calibration_errors(probs, labels, b)
        report[f"calibration_bin{b}"] = {k: cal[k] for k in ("ece", "ace", "mce")}
    cal = calibration_errors(probs, labels, bins)
    report["ece"] = cal["ece"]
    report["reliability_plot"] = str(reliability_diagram(cal, run_dir / "reliability.png", title=title))
    return report


def evaluate_rm(module: RMTrainModule, data: RMData, cfg: RewardTrainConfig, pad_id: int, device: Any,
                run_dir: Path, attributes: Sequence[str], weights: Sequence[float]) -> dict[str, Any]:
    """eval.json's content: pairwise accuracy (overall and by task/user), ECE/ACE/MCE and a reliability diagram;
    regression: masked MSE per attribute, plus pairwise accuracy/ECE on same-prompt completions ordered by the
    weighted gold scalar (both scalars over the attributes labelled for both completions)."""
    bs = cfg.eval_batch_size or cfg.batch_size
    pred = predict(module, data, pad_id, bs, device)
    report: dict[str, Any] = {"objective": cfg.objective, "examples": len(data), "skipped": data.skipped}
    if cfg.objective == "regression":
        labels = torch.tensor(data.labels)
        mask = labels != -100.0
        report["mse"] = float(((pred - labels) ** 2 * mask).sum() / mask.sum().clamp(min=1))
        report["mse_by_attribute"] = {a: (float(((pred[:, k] - labels[:, k]) ** 2)[mask[:, k]].mean())
                                          if bool(mask[:, k].any()) else None) for k, a in enumerate(attributes)}
        w = torch.tensor(list(weights))
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(data.prompt_keys):
            by_prompt[key].append(i)
        chosen, rejected = [], []
        for members in by_prompt.values():
            for i in members:
                for j in members:
                    # Both scalars over the attributes labelled for both completions (HelpSteer2 labels all).
                    common = (mask[i] & mask[j]).float() * w
                    if float(labels[i].clamp(min=0) @ common) > float(labels[j].clamp(min=0) @ common):
                        chosen.append(float(pred[i] @ common))
                        rejected.append(float(pred[j] @ common))
        if chosen:
            report["pairs_from_gold_scalar"] = _pair_report(chosen, rejected, None, cfg.eval_bins, run_dir,
                                                            "regression RM: pairs by gold scalar")
        return report
    cats = [data.group_names[g] if g >= 0 else "<unseen>" for g in data.groups] if data.groups else None
    report.update(_pair_report(pred[:, 0].tolist(), pred[:, 1].tolist(), cats, cfg.eval_bins, run_dir,
                               f"{cfg.objective} RM: pairwise calibration"))
    if cfg.objective == "remodetect":  # detection AUROC, LLM text = 1, human text = 0 (testtime_eval.md §B6)
        from alignkit.rewards.evaluate import auroc

        n = pred.shape[0]
        report["auroc"] = auroc(pred[:, 0].tolist() + pred[:, 1].tolist(), [1] * n + [0] * n)
    return report
