"""`train_reward_model`: read → tokenise → build the module → `train_loop` → evaluate → save `final/`.

The run directory's layout is described in `alignkit.rewards.training` (the package docstring).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.config import save_config
from alignkit.errors import ConfigError, DataError
from alignkit.rewards.model import (
    HELPSTEER2_ATTRIBUTES,
    HELPSTEER2_WEIGHTS,
    RewardModel,
)
from alignkit.rewards.pal import PALB
from alignkit.rewards.training.config import RewardTrainConfig
from alignkit.rewards.training.data import (
    RMData,
    RMSource,
    TaskBalancedSource,
    _read,
    as_rm_records,
    collate_rm,
    read_replay_texts,
    resolve_attributes,
    tokenize_rm_records,
)
from alignkit.rewards.training.evaluate import evaluate_rm
from alignkit.rewards.training.module import build_reward_model, merge_lora_backbone, prepare_trainable
from alignkit.rewards.training.pal_reward import PALReward
from alignkit.rewards.training.steps import DeviceStep, _make_step, replay_rewards
from alignkit.rundir import locks_output_dir
from alignkit.runtime import make_accelerator, seed_everything, split_eval
from alignkit.train.checkpoint import prepare_from_config


@dataclass
class RewardTrainResult:
    run_dir: Path
    steps: int
    final_dir: Path | None
    eval: dict[str, Any]
    summary: dict[str, Any]
    reward: RewardModel | PALReward | None = None


def _eval_fn(step: Any, data: RMData, pad_id: int, batch_size: int) -> Any:
    def evaluate(model: nn.Module) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for s in range(0, len(data), batch_size):
            idx = list(range(s, min(s + batch_size, len(data))))
            loss, metrics, _ = step(model, collate_rm(data, idx, pad_id), "eval")
            for k, v in {"loss": float(loss), **metrics}.items():
                sums[k] += float(v) * len(idx)
        return {k: v / len(data) for k, v in sums.items()}

    return evaluate


# As `alignkit.train.engine.train` (issue #14): the run directory is locked for the whole run, and a fresh run into a
# directory that holds a previous run's checkpoints or final/ is refused unless `cfg.resume` or `cfg.overwrite`.
@locks_output_dir(prepare=prepare_from_config)
def train_reward_model(cfg: RewardTrainConfig, *, records: Sequence[Any] | None = None,
                       eval_records: Sequence[Any] | None = None, accelerator: Any = None, log: Any = None,
                       on_checkpoint: Any = None) -> RewardTrainResult:
    """Train a reward model with `cfg.objective` through `train_loop`; see the module docstring for the run
    directory. `records`/`eval_records` bypass reading `cfg.data`/`cfg.eval_data` (Python use).

    The run holds the lock on `cfg.output_dir` (`alignkit.rundir.locks_output_dir`); a directory that holds a
    previous run is refused (ConfigError) unless `cfg.resume` (continue it) or `cfg.overwrite` (delete its
    outputs and start again), as `alignkit.train.checkpoint.prepare_run_dir` describes."""
    from alignkit.train.loop import train_loop

    cfg.validate(need_data=records is None)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    accelerator = accelerator or make_accelerator()
    main = accelerator.is_main_process
    say = log or (print if main else (lambda _m: None))
    seed_everything(cfg.seed)
    train_records = as_rm_records(list(records) if records is not None else _read(cfg.data, cfg), cfg,
                                  cfg.data or "<records>", say)
    if eval_records is None and cfg.eval_data:
        eval_records = _read(cfg.eval_data, cfg)
    if eval_records is not None:
        eval_records = as_rm_records(list(eval_records), cfg, cfg.eval_data or "<eval records>", say)
    if eval_records is None:
        train_records, eval_records = split_eval(train_records, cfg.eval_split, cfg.seed)
    if not train_records:
        raise DataError(f"no training records for objective {cfg.objective}", source=cfg.data or "<records>")
    if cfg.objective == "critique":  # a generative RM with its own module and step (training/critique.py)
        from alignkit.rewards.training.critique import train_critique_rm

        run_dir, steps, final, report = train_critique_rm(cfg, train_records, eval_records, accelerator=accelerator,
                                                          log=say, on_checkpoint=on_checkpoint)
        return RewardTrainResult(run_dir, steps, final, report, {"objective": "critique", "steps": steps})

    attributes: list[str] = []
    weights: list[float] = [1.0]
    if cfg.objective == "regression":
        attributes = resolve_attributes(train_records, cfg)
        weights = (list(cfg.attribute_weights) if cfg.attribute_weights else
                   list(HELPSTEER2_WEIGHTS) if attributes == HELPSTEER2_ATTRIBUTES else [1.0] * len(attributes))
        if len(weights) != len(attributes):
            raise ConfigError(f"{len(weights)} attribute_weights for attributes {attributes}")
    rm = build_reward_model(cfg, num_labels=max(1, len(attributes)))
    if attributes:
        rm.attributes, rm.weights = attributes, [float(w) for w in weights]
    if cfg.objective == "principle" and cfg.principles:
        rm.principles = list(cfg.principles)
    tokenizer = rm.tokenizer
    pad_id = int(tokenizer.pad_token_id)

    train_data = tokenize_rm_records(train_records, cfg, tokenizer, attributes=attributes, desc="tokenising train")
    names = train_data.group_names
    eval_data = (tokenize_rm_records(eval_records, cfg, tokenizer, group_names=names, attributes=attributes,
                                     desc="tokenising eval") if eval_records else None)
    say(f"train data: {len(train_data)} examples ({train_data.stats.summary()}; left out: "
        f"{train_data.skip_summary()})")
    if eval_data is not None:
        say(f"eval data: {len(eval_data)} examples ({eval_data.stats.summary()}; left out: "
            f"{eval_data.skip_summary()})")
    if not len(train_data):
        raise DataError(f"every training record was left out ({train_data.skip_summary()})")

    pal = None
    if cfg.objective == "pal":
        hidden = rm.model.config.get_text_config().hidden_size
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            pal = PALB(len(names), cfg.pal_k, hidden, cfg.pal_dim or hidden, cfg.pal_temperature)
    module = prepare_trainable(rm, cfg, pal)
    device = accelerator.device
    module.to(device)

    run_dir = Path(cfg.output_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = replace(cfg, attributes=attributes or list(cfg.attributes),
                           attribute_weights=weights if attributes else list(cfg.attribute_weights))
        save_config(resolved, run_dir / "config.yaml")
    accelerator.wait_for_everyone()

    state: dict[str, Any] = {}
    replay, replay_orig = _remodetect_replay(cfg, rm, module, pad_id, device, say)
    step = DeviceStep(_make_step(cfg, names, attributes, state, replay, replay_orig, pad_id), device)
    source = (TaskBalancedSource(train_data, pad_id, cfg.batch_size) if cfg.objective == "more"
              else RMSource(train_data, pad_id))
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    # The final evaluation (eval.json) covers the last step, so in-loop evaluation runs only when asked for.
    eval_fn = (_eval_fn(step, eval_data, pad_id, eval_bs)
               if eval_data is not None and len(eval_data) and cfg.eval_every else None)
    extra = f", tasks {names}" if cfg.objective == "more" else f", {len(names)} users" if names else ""
    say(f"reward objective {cfg.objective} (tune={cfg.tune}{extra})")
    seed_everything(cfg.seed + 1)
    loop = train_loop(module, source, step, cfg, run_dir, accelerator=accelerator, eval_fn=eval_fn,
                      objective_state=state, lora=cfg.tune == "lora", log=say, on_checkpoint=on_checkpoint)

    final_dir: Path | None = None
    report: dict[str, Any] = {}
    reward: RewardModel | PALReward | None = None
    if main:
        if eval_data is not None and len(eval_data):
            report = evaluate_rm(module, eval_data, cfg, pad_id, device, run_dir, attributes, weights)
            report.update(run_dir=str(run_dir), steps=loop.steps)
            (run_dir / "eval.json").write_text(json.dumps(report, indent=2, default=_json_default))
            acc = report.get("accuracy", report.get("pairs_from_gold_scalar", {}).get("accuracy"))
            say(f"eval: {len(eval_data)} examples" + (f", accuracy {acc:.4f}" if acc is not None else "")
                + (f", ECE {report['ece']:.4f}" if "ece" in report else "")
                + (f", MSE {report['mse']:.4f}" if "mse" in report else ""))
        merge_lora_backbone(module.rm)
        rm.model = module.rm
        rm.model.eval()
        rm.name = f"rm:{run_dir / 'final'}"
        if pal is not None:
            reward = PALReward(rm, pal.cpu().eval(), names, name=f"pal:{run_dir / 'final'}")
            rm.model.cpu()
            final_dir = reward.save(run_dir / "final")
        else:
            rm.model.cpu()
            final_dir = rm.save(run_dir / "final")
            reward = rm
    summary = {"objective": cfg.objective, "tune": cfg.tune, "steps": loop.steps, "train_examples": len(train_data),
               "eval_examples": len(eval_data) if eval_data is not None else 0,
               "left_out_train": train_data.skipped, "left_out_eval": eval_data.skipped if eval_data else {},
               "truncation": train_data.stats.summary(), "skipped_steps": loop.skipped_steps,
               "groups": names, "attributes": attributes, "last": loop.last_metrics,
               "eval": {k: v for k, v in report.items() if isinstance(v, (int, float))}}
    if main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    accelerator.wait_for_everyone()
    return RewardTrainResult(run_dir, loop.steps, final_dir, report, summary, reward)


def _remodetect_replay(cfg: RewardTrainConfig, rm: RewardModel, module: nn.Module, pad_id: int, device: Any,
                       say: Any) -> tuple[list[list[int]], list[float]]:
    """ReMoDetect's replay texts (encoded as the RM scores text: alone, no template) and the untrained module's
    rewards of them (r_orig), before the first step; nothing for other objectives or without replay_data."""
    if cfg.objective != "remodetect" or not cfg.replay_data:
        return [], []
    seqs = [rm.encode("", t) for t in read_replay_texts(cfg.replay_data)]
    orig = replay_rewards(module, seqs, pad_id, cfg.eval_batch_size or cfg.batch_size, device)
    say(f"replay: {len(seqs)} texts from {cfg.replay_data}, {cfg.replay_batch_size} per step, "
        f"l2_ratio {cfg.replay_l2_ratio}")
    return seqs, orig


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)
