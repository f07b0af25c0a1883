"""Iterated on-policy alignment recipes: evaluate the base, then R rounds of (sample from the current policy →
verify → select → train → merge), then evaluate the final policy against the base on the same held-out prompts.

Methods (`method`), all on data the current policy wrote itself (module `selfdata`):

* `rft` — rejection-sampling fine-tuning (ReST-EM, arXiv 2312.06585; RAFT, arXiv 2304.06767): SFT on the samples
  that pass every constraint and ended by EOS;
* `dpo` — iterated on-policy DPO (arXiv 2312.11456): best-vs-worst pairs by constraint satisfaction rate (ACT's
  CSR ranking, arXiv 2403.06326), with an optional SFT term on the chosen answer (`sft_weight`, as in RPO);
* `rft+dpo` — both, in this order, in each round.

Each round is a directory (`round1/`, `round2/`…) holding its data (`data/lists.jsonl`, the selected
`sft.jsonl`/`pairs.jsonl`), its training run(s) and the merged model that the next round samples from. Every stage
is resumable (`pipelines.stages`); `recipes/constraints.yaml` is the measured CPU configuration
(docs/efficacy.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignkit.config import save_config
from alignkit.errors import ConfigError
from alignkit.pipelines.stages import Stages

METHODS = ("rft", "dpo", "rft+dpo")
# LoRA on attention and MLP: SFT on a few dozen demonstrations needs the MLP's capacity too (QLoRA, Dettmers et al.
# 2023, found all-linear adapters necessary to match full fine-tuning).
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class RecipeConfig:
    model: str = "smollm2-135m-instruct"
    output_dir: str = "runs/constraints"
    train_prompts: str = "suite:train"
    test_prompts: str = "suite:test"
    n_train_prompts: int = 256  # fresh prompts per round (round r takes the r-th slice of the train split)
    n_test_prompts: int | None = None  # None: the whole test split
    rounds: int = 2
    method: Literal["rft", "dpo", "rft+dpo"] = "rft"
    reward: str = "csr"  # scores the samples; `min_score` 1.0 with csr = every constraint holds (strict)
    samples_per_prompt: int = 4
    max_new_tokens: int = 192  # the same budget for data and evaluation: answers must be able to finish
    temperature: float = 1.0  # data sampling
    eval_temperature: float = 1.0  # evaluation samples once per prompt; 1.0 also gives an unbiased KL estimate
    min_score: float = 1.0
    require_eos: bool = True
    per_prompt: int = 1  # rft: demonstrations kept per prompt
    min_distinct_2: float = 0.0  # rft: drop repetitive demonstrations (selfdata.select_rft); 0 keeps all
    lr: float = 1e-4
    dpo_lr: float | None = None  # defaults to lr
    epochs: float = 2.0
    batch_size: int = 8
    lora_r: int = 32  # 0: full fine-tuning
    lora_targets: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    beta: float = 0.1
    sft_weight: float = 0.0  # dpo: weight of the NLL term on the chosen answer
    gen_batch_size: int = 128  # sampled rows per forward pass (data: prompts x samples; eval: prompts)
    # sampled rows handed to the sampler per call (>= gen_batch_size): a row that finishes gives its place to a
    # waiting one, so the forward batch stays full instead of draining to the call's longest answer; also the unit
    # an interrupt loses and the unit of seeding (changing it changes the samples)
    call_rows: int = 512
    # rft: stop a data sample once it breaks a constraint for good (alignkit.rewards.early_reject): the same
    # demonstrations for less sampling; off for pairs, whose losers must be whole answers
    early_reject: bool = True
    eval_rounds: bool = False  # also evaluate each intermediate policy
    seed: int = 0
    extra_train: dict[str, Any] = field(default_factory=dict)  # more TrainConfig keys (e.g. torch_threads)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.rounds < 1 or self.n_train_prompts < 1 or self.samples_per_prompt < 2:
            raise ConfigError("rounds and n_train_prompts must be >= 1 and samples_per_prompt >= 2")
        if not 0.0 <= self.min_distinct_2 <= 1.0:  # here too, so a bad value fails before a round is sampled
            raise ConfigError(f"min_distinct_2 must be in [0, 1], got {self.min_distinct_2}")


def check_same_recipe(cfg: RecipeConfig, saved: Path) -> None:
    """A rerun resumes only the same recipe: mixing the rounds of two settings in one directory would be silent
    corruption, so other settings are refused with the keys that differ."""
    import yaml

    from alignkit.config import to_dict

    if not saved.exists():
        return
    old = yaml.safe_load(saved.read_text()) or {}
    new = to_dict(cfg)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise ConfigError(f"{saved.parent} holds a recipe run with other settings ({', '.join(diff)}); rerun with the "
                          "same settings to resume, or choose another output_dir")


def _eval_cfg(cfg: RecipeConfig, out: Path, model: str, method: str, **kw: Any) -> Any:
    from alignkit.evaluate.evaluation import EvalConfig

    return EvalConfig(model=model, prompts=cfg.test_prompts, limit=cfg.n_test_prompts, reward=cfg.reward,
                      method=method, max_new_tokens=cfg.max_new_tokens, temperature=cfg.eval_temperature,
                      batch_size=max(cfg.call_rows, cfg.gen_batch_size), max_batch_rows=cfg.gen_batch_size,
                      seed=cfg.seed, output_dir=str(out), **kw)


def round_prompts(cfg: RecipeConfig, prompts: list[Any], round_index: int) -> list[Any]:
    """Round r (1-based) takes prompts[(r-1)·n : r·n], wrapping around when the split runs out."""
    n = cfg.n_train_prompts
    if not prompts:
        raise ConfigError(f"no train prompts in {cfg.train_prompts!r}")
    start = ((round_index - 1) * n) % len(prompts)
    picked = (prompts[start:] + prompts[:start]) * (1 + n // len(prompts))
    return picked[:n]


def build_round_data(cfg: RecipeConfig, out: Path, policy: str, round_index: int) -> dict[str, Any]:
    """Sample from `policy`, score, and write the selected training files of one round."""
    from alignkit.data.build.common import SamplingSettings, items_from_prompts, load_prompts
    from alignkit.data.build.runner import run_build
    from alignkit.data.io import read_records, write_records
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model
    from alignkit.pipelines.selfdata import ScoredSamplesBuilder, list_stats, select_pairs, select_rft
    from alignkit.rewards.registry import load_reward

    prompts = round_prompts(cfg, load_prompts(cfg.train_prompts), round_index)
    model, tokenizer = load_model(policy)
    settings = SamplingSettings(n=cfg.samples_per_prompt, max_new_tokens=cfg.max_new_tokens,
                                temperature=cfg.temperature, seed=cfg.seed + round_index)
    sampler = HFSampler(model, tokenizer, max_batch_rows=max(64, cfg.gen_batch_size), progress=True)
    builder = ScoredSamplesBuilder(sampler, load_reward(cfg.reward), settings,
                                   policy_name=policy, reward_spec=cfg.reward,
                                   early_reject=cfg.early_reject and cfg.method == "rft")
    batch = max(1, max(cfg.call_rows, cfg.gen_batch_size) // cfg.samples_per_prompt)
    report = run_build(builder, items_from_prompts(prompts), out / "lists.jsonl", batch_size=batch)
    lists = read_records(out / "lists.jsonl", kind="listwise", allow_empty=True).records
    summary: dict[str, Any] = {"policy": policy, "prompts": len(prompts), "lists": len(lists),
                               "build": report.summary(), **list_stats(lists, cfg.min_score)}
    if "rft" in cfg.method:
        rft = select_rft(lists, min_score=cfg.min_score, require_eos=cfg.require_eos, per_prompt=cfg.per_prompt,
                         min_distinct_2=cfg.min_distinct_2)
        write_records(out / "sft.jsonl", rft.records)
        summary["rft"] = rft.summary()
    if "dpo" in cfg.method:
        pairs = select_pairs(lists, require_eos=cfg.require_eos)
        write_records(out / "pairs.jsonl", pairs.records)
        summary["dpo"] = pairs.summary()
    return summary


def train_step(cfg: RecipeConfig, out: Path, policy: str, data: Path, objective: str) -> dict[str, Any]:
    """Train `policy` on `data` (LoRA merged into a plain model directory, or a full fine-tune); the returned
    `model` is the directory the next stage loads."""
    from alignkit.models import LoraConfig
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train
    from alignkit.train.export import export

    n_records = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
    if n_records == 0:
        return {"model": policy, "steps": 0, "skipped": f"no training records in {data}"}
    lora = (LoraConfig(r=cfg.lora_r, alpha=2 * cfg.lora_r, target_modules=list(cfg.lora_targets)) if cfg.lora_r
            else LoraConfig(r=0))
    args: dict[str, Any] = {"beta": cfg.beta, "sft_weight": cfg.sft_weight} if objective == "dpo" else {}
    tcfg = TrainConfig(model=policy, data=str(data), objective=objective, objective_args=args,
                       output_dir=str(out), batch_size=min(cfg.batch_size, n_records),
                       lr=(cfg.dpo_lr or cfg.lr) if objective == "dpo" else cfg.lr, epochs=cfg.epochs,
                       warmup_steps=2, max_length=cfg.max_new_tokens + 256, lora=lora,
                       reference="precompute" if objective == "dpo" else "auto", save_every=20, seed=cfg.seed,
                       resume=(out / "checkpoints").exists(),
                       # demonstrations run from 20 to 190 tokens: length-grouped batches carry ~1.5x less padding
                       **{"group_by_length": True, **cfg.extra_train})
    result = train(tcfg)
    model_dir = result.final_dir
    if cfg.lora_r:
        model_dir = out / "merged"
        if not (model_dir / "config.json").exists():
            export(out, model_dir)
    return {"model": str(model_dir), "steps": result.steps, "records": n_records,
            **{k: v for k, v in result.summary.items() if isinstance(v, int | float | str)}}


def run_recipe(cfg: RecipeConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the whole recipe; returns the final evaluation's headline with the paired gain."""
    from alignkit.evaluate.evaluation import evaluate

    cfg.validate()
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    check_same_recipe(cfg, root / "config.yaml")
    save_config(cfg, root / "config.yaml")
    stages = Stages(root, log)
    base_eval = root / "base-eval"
    base = stages.run("base-eval", lambda out: evaluate(_eval_cfg(cfg, out, cfg.model, "base")))
    policy = cfg.model
    for r in range(1, cfg.rounds + 1):
        data = stages.run(f"round{r}/data", lambda out, p=policy, i=r: build_round_data(cfg, out, p, i))
        for objective in [m for m in ("rft", "dpo") if m in cfg.method]:
            file = root / f"round{r}/data" / ("sft.jsonl" if objective == "rft" else "pairs.jsonl")
            name = f"round{r}/{objective}"
            trained = stages.run(name, lambda out, p=policy, f=file, o=objective:
                                 train_step(cfg, out, p, f, "sft" if o == "rft" else "dpo"))
            policy = trained["model"]
        log(f"round {r}: {data.get('pass_rate', 0):.1%} of samples passed; policy is now {policy}")
        if cfg.eval_rounds and r < cfg.rounds:
            stages.run(f"round{r}/eval", lambda out, p=policy, i=r: evaluate(
                _eval_cfg(cfg, out, p, f"round {i}", baseline=str(base_eval))))
    final = stages.run("final-eval", lambda out: evaluate(
        _eval_cfg(cfg, out, policy, f"{cfg.method} x{cfg.rounds}", baseline=str(base_eval),
                  reference_model=cfg.model if cfg.eval_temperature == 1.0 else None)))
    from alignkit.evaluate.guards import guard_warnings

    final = {**final, "guard_warnings": guard_warnings(final, base)}
    (root / "summary.json").write_text(json.dumps({"timings": stages.timings, "final": final}, indent=2,
                                                  default=str), encoding="utf-8")
    return final
