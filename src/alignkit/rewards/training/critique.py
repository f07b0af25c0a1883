"""`alignkit reward train --objective critique`: the MM-RLHF critique reward model (spec wave2_feedback_safety.md
§4; model and loss in `alignkit.rewards.critique`), trained through `alignkit.train.loop.train_loop`.

Data: pairwise records; the gold critiques are the columns `chosen_critique` / `rejected_critique` (also read as
the code's `chosen_reason` / `rejected_reason`), kept in metadata by the reader. A pair without both critiques
trains BT-only (`no_critic = 1`). `margin` is the BT margin; metadata `is_tie: true` marks ties. Defaults (the
released script): bt_weight w_f = 1, critique_weight w_c = 1, critique_center_coef c_ctr = 0.01, lr as given.
Writes RUN/final/ (the LM, its tokenizer, `reward_head.safetensors`, `alignkit_critique_rm.json`), loadable as
`rm:RUN/final` and by `CritiqueReward.load`, and RUN/eval.json (pair accuracy with gold critiques).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.config import save_config
from alignkit.errors import ConfigError, DataError
from alignkit.models import load_model
from alignkit.rewards.critique import (
    CritiqueReward,
    CritiqueRM,
    RewardHead,
    critique_rm_loss,
    encode_rm,
    pad_right,
)
from alignkit.runtime import make_accelerator, seed_everything, split_eval

CRITIQUE_COLUMNS = {"chosen": ("chosen_critique", "chosen_reason"), "rejected": ("rejected_critique", "rejected_reason")}


def _critique(meta: dict[str, Any], side: str) -> str | None:
    for name in CRITIQUE_COLUMNS[side]:
        v = meta.get(name)
        if isinstance(v, str) and v.strip():
            return v
    return None


@dataclass
class CritiqueExample:
    chosen: tuple[list[int], list[int]]
    rejected: tuple[list[int], list[int]]
    no_critic: bool
    margin: float
    is_tie: bool


def tokenize_critique_records(records: list[Any], tokenizer: Any, cfg: Any) -> list[CritiqueExample]:
    out = []
    for i, r in enumerate(records):
        if not hasattr(r, "chosen"):
            raise DataError(f"record {i}: the critique RM trains on pairwise records, got {type(r).__name__}")
        meta = r.metadata or {}
        zc, zr = _critique(meta, "chosen"), _critique(meta, "rejected")
        no_critic = zc is None or zr is None
        out.append(CritiqueExample(encode_rm(tokenizer, r.prompt, r.chosen, None if no_critic else zc,
                                             max_length=cfg.max_length),
                                   encode_rm(tokenizer, r.prompt, r.rejected, None if no_critic else zr,
                                             max_length=cfg.max_length),
                                   no_critic, float(r.margin or 0.0), bool(meta.get("is_tie", False))))
    return out


@dataclass
class CritiqueBatch:
    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    no_critic: Tensor
    margins: Tensor
    is_tie: Tensor

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


class CritiqueSource:
    """`BatchSource` for `train_loop`: chosen rows first, then rejected rows, right-padded."""

    def __init__(self, data: list[CritiqueExample], pad_id: int) -> None:
        self.data, self.pad_id = data, pad_id

    def __len__(self) -> int:
        return len(self.data)

    def get(self, indices: list[int]) -> CritiqueBatch:
        exs = [self.data[i] for i in indices]
        ids, att, lab = pad_right([e.chosen for e in exs] + [e.rejected for e in exs], self.pad_id)
        return CritiqueBatch(ids, att, lab, torch.tensor([e.no_critic for e in exs], dtype=torch.float32),
                             torch.tensor([e.margin for e in exs]), torch.tensor([e.is_tie for e in exs]))


class CritiqueStep:
    """BT + centering + critique NLL on one forward of the 2B sequences (spec §4.3)."""

    def __init__(self, cfg: Any, device: Any) -> None:
        self.kw = {"bt_weight": cfg.critique_bt_weight, "critique_weight": cfg.critique_weight,
                   "center_coef": cfg.critique_center_coef, "tie_weight": cfg.critique_tie_weight}
        self.device = device

    def __call__(self, model: nn.Module, batch: CritiqueBatch, split: str = "train"
                 ) -> tuple[Tensor, dict[str, float], int]:
        d = self.device
        r, nll = model(batch.input_ids.to(d), batch.attention_mask.to(d), batch.labels.to(d))
        b = batch.no_critic.shape[0]
        margins = batch.margins.to(d) if bool((batch.margins != 0).any()) else None
        loss, metrics = critique_rm_loss(r[:b], r[b:], nll[:b], nll[b:], batch.no_critic.to(d), margins,
                                         batch.is_tie.to(d), **self.kw)
        return loss, metrics, batch.n_tokens


def train_critique_rm(cfg: Any, records: list[Any], eval_records: list[Any] | None, *, accelerator: Any = None,
                      log: Any = None, on_checkpoint: Any = None) -> tuple[Path, int, Path | None, dict[str, Any]]:
    """Train and save the critique RM; returns (run_dir, steps, final_dir, eval report)."""
    from alignkit.train.loop import train_loop

    if cfg.tune != "full" or cfg.lora.enabled:
        raise ConfigError("objective critique trains the whole LM and its head: use tune=full without LoRA")
    accelerator = accelerator or make_accelerator()
    say = log or (print if accelerator.is_main_process else (lambda _m: None))
    seed_everything(cfg.seed)
    if eval_records is None:
        records, eval_records = split_eval(records, cfg.eval_split, cfg.seed)
    lm, tokenizer = load_model(cfg.model, seed=cfg.seed)
    hidden = lm.config.get_text_config().hidden_size
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        module = CritiqueRM(lm, RewardHead(hidden))
    pad_id = int(tokenizer.pad_token_id)
    train_data = tokenize_critique_records(records, tokenizer, cfg)
    eval_data = tokenize_critique_records(eval_records, tokenizer, cfg) if eval_records else []
    n_crit = sum(not e.no_critic for e in train_data)
    say(f"critique RM: {len(train_data)} train pairs ({n_crit} with critiques, {len(train_data) - n_crit} BT-only), "
        f"{len(eval_data)} eval pairs")
    device = accelerator.device
    module.to(device)
    run_dir = Path(cfg.output_dir)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    step = CritiqueStep(cfg, device)
    seed_everything(cfg.seed + 1)
    loop = train_loop(module, CritiqueSource(train_data, pad_id), step, cfg, run_dir, accelerator=accelerator,
                      log=say, on_checkpoint=on_checkpoint)
    report: dict[str, Any] = {}
    final: Path | None = None
    if accelerator.is_main_process:
        module.eval()
        if eval_data:
            src = CritiqueSource(eval_data, pad_id)
            correct = 0
            with torch.no_grad():
                for s in range(0, len(eval_data), cfg.batch_size):
                    batch = src.get(list(range(s, min(s + cfg.batch_size, len(eval_data)))))
                    r, _ = module(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device))
                    b = batch.no_critic.shape[0]
                    correct += int((r[:b] > r[b:]).sum())
            report = {"pairs": len(eval_data), "accuracy": correct / len(eval_data), "critiques": "gold"}
            (run_dir / "eval.json").write_text(json.dumps(report, indent=2))
            say(f"eval: {len(eval_data)} pairs, accuracy {report['accuracy']:.4f} (gold critiques)")
        module.cpu()
        final = CritiqueReward(module, tokenizer, name=f"rm:{run_dir / 'final'}").save(run_dir / "final")
    accelerator.wait_for_everyone()
    return run_dir, loop.steps, final, report
