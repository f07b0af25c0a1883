"""`alignkit merge`: merge fine-tuned checkpoints of one base into a plain HF model directory, with coefficients
searched on a probe set (Self Positioning, spec wave2_selfalign_merge.md §5) or fixed by a rule (PEFT's task
arithmetic / TIES / DARE, or a linear average), and a side-by-side comparison of the rules on the same probe.

Output: `OUTPUT_DIR/` (safetensors + tokenizer, loadable by `AutoModelForCausalLM.from_pretrained`) and
`OUTPUT_DIR/merge.json` = {"method", "anchors", "names", "lambdas", "trace", "probe_metrics", "comparison"}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from alignkit.errors import ConfigError
from alignkit.merge.baselines import FIXED_METHODS, fixed_merge
from alignkit.merge.search import DEFAULT_GRID, grid_search, self_positioning
from alignkit.merge.vectors import State, TaskVectors

METHODS = ("self_positioning", "grid", *FIXED_METHODS)


@dataclass
class MergeConfig:
    base: str = "tiny-random"
    models: list[str] = field(default_factory=list)
    output_dir: str = "runs/merged"
    method: str = "self_positioning"
    anchor: Literal["base", "chain"] = "chain"  # chain: τ_k = θ_k − θ_{k−1} (SFT then DPO); base: θ_k − θ_0
    lambdas: list[float] | None = None  # fixed methods: the weights (task_arithmetic default 1 each)
    probe: str | None = None  # JSONL tagged by `task`
    per_task: int | None = 256  # balanced probe: this many per task at most (the smallest task bounds it)
    # self_positioning (gradient); the paper's settings are [uncertain], these are the spec's recommendation
    lr: float = 0.01
    steps: int = 100
    init: float = 1.0
    optimizer: Literal["adam", "sgd"] = "adam"
    box: list[float] | None = None  # e.g. [0, 2]
    beta: float = 0.1  # dpo probe
    reference: str | None = None  # dpo probe π_ref model spec; default: the last task vector's anchor
    max_length: int = 512
    # grid (any Reward over sampled answers)
    reward: str = "csr"
    grid: list[float] = field(default_factory=lambda: list(DEFAULT_GRID))
    samples: int = 1
    max_new_tokens: int = 128
    temperature: float = 0.0
    compare: list[str] = field(default_factory=list)  # fixed methods also scored on the probe
    density: float = 0.5  # ties / dare
    seed: int = 0
    overwrite: bool = False

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        bad = [m for m in self.compare if m not in FIXED_METHODS]
        if bad:
            raise ConfigError(f"compare takes fixed methods {FIXED_METHODS}, got {bad}")
        if not self.models:
            raise ConfigError("give at least one fine-tuned checkpoint (models)")
        if self.method in ("self_positioning", "grid") and not self.probe:
            raise ConfigError(f"method {self.method} searches coefficients on a probe set: set probe=FILE.jsonl")
        if self.box is not None and (len(self.box) != 2 or self.box[0] > self.box[1]):
            raise ConfigError(f"box must be [low, high], got {self.box}")


def _reference_lambdas(tv: TaskVectors) -> list[float]:
    """λ of the last vector's anchor: θ_{K−1} for chained vectors, θ_0 for base-anchored ones."""
    K = len(tv.vectors)
    return [1.0] * (K - 1) + [0.0] if tv.anchors[-1] != "base" else [0.0] * K


def _probe_scorer(cfg: MergeConfig, model: Any, tokenizer: Any, tv: TaskVectors
                  ) -> tuple[Callable[[State], dict[str, float]], Any]:
    """(state → probe metrics, the gradient loss or None)."""
    from alignkit.merge.probe import ProbeLoss, RewardProbe, balanced, probe_items, read_probe

    assert cfg.probe
    groups = balanced(read_probe(cfg.probe), cfg.per_task, cfg.seed)
    if cfg.method == "grid" or (cfg.method in FIXED_METHODS and not set(groups) <= {"sft", "dpo"}):
        from alignkit.rewards.registry import load_reward

        rows = [r for rs in groups.values() for r in rs]
        probe = RewardProbe(model, tokenizer, probe_items(rows, cfg.probe), load_reward(cfg.reward),
                            reward_spec=cfg.reward, n=cfg.samples, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, seed=cfg.seed)
        return probe, None
    ref: dict[str, torch.Tensor] | None = None
    if "dpo" in groups:
        if cfg.reference:
            from alignkit.merge.vectors import load_state

            ref = load_state(cfg.reference)[2]
        else:
            ref = tv.combine(_reference_lambdas(tv))
    loss = ProbeLoss(model, tokenizer, groups, beta=cfg.beta, reference=ref, max_length=cfg.max_length,
                     source=cfg.probe)

    def metrics(state: State) -> dict[str, float]:
        with torch.no_grad():
            per = {k: float(v) for k, v in loss.per_task(dict(state)).items()}
        return {"loss": sum(per.values()) / len(per), **{f"loss_{k}": v for k, v in per.items()}}

    return metrics, loss


def run_merge(cfg: MergeConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from alignkit.merge.vectors import load_task_vectors, save_merged

    cfg.validate()
    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace it")
    model, tokenizer, tv = load_task_vectors(cfg.base, cfg.models, cfg.anchor)
    pairs = dict(zip(tv.names, tv.anchors, strict=True))
    log(f"{len(tv.vectors)} task vectors ({', '.join(f'{n}−{a}' for n, a in pairs.items())}) over "
        f"{len(tv.keys)} tensors")
    scorer, loss = _probe_scorer(cfg, model, tokenizer, tv) if cfg.probe else (None, None)
    trace: list[list[Any]] = []
    points: list[dict[str, Any]] = []
    if cfg.method == "self_positioning":
        assert loss is not None
        base = {k: v for k, v in tv.base.items() if k in tv.vectors[0]}
        res = self_positioning(loss, base, tv.vectors, init=cfg.init, lr=cfg.lr, steps=cfg.steps,
                               optimizer=cfg.optimizer, box=tuple(cfg.box) if cfg.box else None, log=log)
        lambdas, trace = res.lambdas, res.trace
        state = tv.combine(lambdas)
    elif cfg.method == "grid":
        assert scorer is not None
        res = grid_search(lambda lam: scorer(tv.combine(lam)), len(tv.vectors), cfg.grid, log=log)
        lambdas, trace, points = res.lambdas, res.trace, res.points
        state = tv.combine(lambdas)
    else:
        lambdas = list(cfg.lambdas) if cfg.lambdas is not None else None  # type: ignore[assignment]
        state = fixed_merge(tv, cfg.method, lambdas, density=cfg.density, seed=cfg.seed)
    summary: dict[str, Any] = {"method": cfg.method, "names": tv.names, "anchors": pairs,
                               "lambdas": lambdas, "trace": trace, "grid_points": points}
    if scorer is not None:
        summary["probe_metrics"] = scorer(state)
        comparison: dict[str, Any] = {}
        if cfg.method in ("self_positioning", "grid"):
            comparison["task_arithmetic(1,…,1)"] = scorer(tv.combine([1.0] * len(tv.vectors)))
        for m in cfg.compare:
            comparison[m] = scorer(fixed_merge(tv, m, None, density=cfg.density, seed=cfg.seed))
        summary["comparison"] = comparison
    save_merged(model, tokenizer, state, out, overwrite=cfg.overwrite)
    summary["config"] = asdict(cfg)
    (out / "merge.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    log(f"merged model written to {out} (λ = {lambdas})")
    return summary
