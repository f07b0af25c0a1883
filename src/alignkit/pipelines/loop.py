"""`alignkit loop`: iterative self-alignment on one engine (spec ../shared/spec/wave2_selfalign_merge.md §0 "Loop
recipes", §1 I-SHEEP, §2 CycleAlign). Each round: generate with the current model → (self-)judge → filter →
train → evaluate, and the round's model is the next round's generator.

* `method: isheep`: self-written instructions and answers, self-assessment threshold, ROUGE-L dedup, SFT (LoRA,
  merged) from the *base* model on the latest round's data (`isheep.train_from` / `isheep.data` change that).
* `method: cyclealign`: N samples per prompt from the white-box policy, ranked by a black-box judge served
  through the Sampler protocol with dynamic demonstrations from the pool, the white-box belief ranking and their
  LCS agreement; the policy keeps training (from the previous round) with a listwise ranking loss (`pro`).
* `method: ditto`: the policy simulates role-play dialogues from character profiles (knowledge questions and
  contrastive ones it must decline in character) and is fine-tuned on them without the profile (SFT on every
  assistant turn, from the round's model); the round's evaluation is the NLL of held-out in-character answers
  and, with `ditto.judge_model`, WikiRoleEval's consistency / knowledge / rejection scores.

Layout: `iter_0/eval` (the base), then per round k `iter_k/data/` (generated.jsonl, judge.jsonl, kept.jsonl and,
for CycleAlign, pool.jsonl), `iter_k/train/` (the run; `merged/` is the round's model), `iter_k/eval/` and
`iter_k/metrics.jsonl` (the round's row); `rounds.jsonl` holds the per-round table. Every stage is resumable
(`pipelines.stages`): a rerun skips finished stages and resumes the one that was interrupted; a rerun with other
settings is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignkit.config import save_config
from alignkit.decode.sampler import Sampler
from alignkit.errors import ConfigError, DataError
from alignkit.pipelines import cyclealign_round, ditto, isheep_round
from alignkit.pipelines.cyclealign_round import CycleAlignConfig
from alignkit.pipelines.ditto import DittoConfig
from alignkit.pipelines.isheep_round import ISheepConfig
from alignkit.pipelines.recipe import ALL_LINEAR, RecipeConfig, check_same_recipe, train_step
from alignkit.pipelines.stages import Stages

METHODS = ("isheep", "cyclealign", "ditto")
# (model spec, role) -> a Sampler; role is "policy" (the round's generator) or "judge" (I-SHEEP's base judge,
# CycleAlign's black box). Tests pass scripted samplers; the default loads the model with HFSampler.
SamplerFactory = Callable[[str, str], Sampler]


@dataclass
class DittoLoopConfig(DittoConfig):
    """Ditto's simulation settings plus its evaluation: `eval_characters` (default: the training characters)
    are simulated once by M_0 with another seed, and every round's model is scored on those dialogues."""

    eval_characters: str = ""
    eval_seed: int = 12345
    judge_model: str = ""  # WikiRoleEval judge (a model spec); empty: only the held-out answer NLL
    judge_samples: int = 3  # n judge samples per query (the reference: 3 at T = 0.2)
    judge_temperature: float = 0.2
    eval_max_new_tokens: int = 128


@dataclass
class LoopConfig:
    method: Literal["isheep", "cyclealign", "ditto"] = "isheep"
    model: str = "smollm2-135m-instruct"  # M_0
    output_dir: str = "runs/loop"
    rounds: int = 3
    seed: int = 0
    # training (LoRA merged into a plain model each round; lora_r 0 = full fine-tuning)
    lr: float = 1e-4
    epochs: float = 2.0  # the I-SHEEP log names suggest 2 epochs [uncertain]
    batch_size: int = 8
    lora_r: int = 16
    lora_targets: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    max_length_new_tokens: int = 256  # training sequences hold the prompt + up to this many completion tokens
    extra_train: dict[str, Any] = field(default_factory=dict)
    # per-round evaluation of each round's model (optional): prompts + any reward, paired against the base
    eval_prompts: str | None = None
    eval_reward: str | None = None
    n_eval_prompts: int | None = None
    eval_max_new_tokens: int = 128
    eval_batch_size: int = 16
    isheep: ISheepConfig = field(default_factory=ISheepConfig)
    cyclealign: CycleAlignConfig = field(default_factory=CycleAlignConfig)
    ditto: DittoLoopConfig = field(default_factory=DittoLoopConfig)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")
        if (self.eval_prompts is None) != (self.eval_reward is None):
            raise ConfigError("eval_prompts and eval_reward go together (set both for a per-round evaluation)")
        if self.method == "isheep" and self.isheep.judge not in ("current", "base"):
            raise ConfigError(f"isheep.judge must be 'current' or 'base', got {self.isheep.judge!r}")
        if self.method == "cyclealign":
            c = self.cyclealign
            if not c.judge_model:
                raise ConfigError("cyclealign.judge_model is not set: name the black-box ranker (a model spec)")
            if c.n_samples < 2 or c.prompts_per_round < 1:
                raise ConfigError("cyclealign.n_samples must be >= 2 and prompts_per_round >= 1")
        if self.method == "ditto" and not 1 <= self.ditto.min_turns <= self.ditto.max_turns:
            raise ConfigError("ditto needs 1 <= min_turns <= max_turns")


def default_sampler(spec: str, role: str) -> Sampler:
    """A model spec as a Sampler: the model loaded by `alignkit.models.load_model`, sampled by HFSampler
    (plain-string prompts verbatim, chat lists through the chat template)."""
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tokenizer = load_model(spec)
    return HFSampler(model, tokenizer, raw=True)


class _Samplers:
    """One sampler per model spec, loaded on first use (a round's generator and its self-judge are one model)."""

    def __init__(self, factory: SamplerFactory) -> None:
        self.factory, self.cache = factory, {}

    def get(self, spec: str, role: str) -> Sampler:
        if (spec, role) not in self.cache:
            self.cache = {k: v for k, v in self.cache.items() if k[1] != role}  # one model per role in memory
            self.cache[(spec, role)] = self.factory(spec, role)
        return self.cache[(spec, role)]


def _train(cfg: LoopConfig, out: Path, start: str, data: Path, objective: str) -> dict[str, Any]:
    """Train `start` on `data` with the recipe's training step (LoRA merged into a plain model)."""
    rcfg = RecipeConfig(model=start, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size, lora_r=cfg.lora_r,
                        lora_targets=list(cfg.lora_targets), max_new_tokens=cfg.max_length_new_tokens,
                        seed=cfg.seed, extra_train=dict(cfg.extra_train))
    return {**train_step(rcfg, out, start, data, objective), "start": start, "data": str(data)}


def _training_file(root: Path, k: int, cumulative: bool) -> Path:
    """The round's training records: its own kept.jsonl, or every round's so far (`data: cumulative`)."""
    latest = root / f"iter_{k}" / "data" / "kept.jsonl"
    if not cumulative or k == 1:
        return latest
    combined = root / f"iter_{k}" / "data" / "train.jsonl"
    combined.write_text("".join((root / f"iter_{i}" / "data" / "kept.jsonl").read_text(encoding="utf-8")
                                for i in range(1, k + 1)), encoding="utf-8")
    return combined


def _cyclealign_chunks(cfg: LoopConfig) -> tuple[list[Any], list[Any]]:
    """(held-out prompts, training prompts) from `cyclealign.prompts`; round t trains on the t-th chunk."""
    from alignkit.data.build.common import load_prompts

    if not cfg.cyclealign.prompts:
        raise DataError("cyclealign.prompts is not set: give the prompts the policy answers")
    prompts = [p.prompt for p in load_prompts(cfg.cyclealign.prompts)]
    h = cfg.cyclealign.heldout_prompts
    heldout, train = prompts[:h], prompts[h:]
    if not train:
        raise DataError(f"{cfg.cyclealign.prompts}: no prompts left for training after {h} held-out ones")
    return heldout, train


def _round_data(cfg: LoopConfig, out: Path, k: int, policy: str, samplers: _Samplers) -> dict[str, Any]:
    seed = cfg.seed + 1000 * k
    if cfg.method == "isheep":
        c = cfg.isheep
        judge_spec = policy if c.judge == "current" else cfg.model
        generator = samplers.get(policy, "policy")
        judge = generator if judge_spec == policy else samplers.get(judge_spec, "judge")
        return isheep_round.build_round(out, generator, judge, isheep_round.read_seeds(c.seeds), c, iteration=k,
                                        source_model=policy, judge_model=judge_spec, seed=seed)
    if cfg.method == "ditto":
        return ditto.build_round(out, samplers.get(policy, "policy"), ditto.read_characters(cfg.ditto.characters),
                                 cfg.ditto, iteration=k, source_model=policy, seed=seed)
    c = cfg.cyclealign
    _, train = _cyclealign_chunks(cfg)
    n = c.prompts_per_round
    start = ((k - 1) * n) % len(train)
    chunk = ((train[start:] + train[:start]) * (1 + n // len(train)))[:n]
    pool_file = out.parent.parent / f"iter_{k - 1}" / "data" / "pool.jsonl"
    pool = [json.loads(line) for line in pool_file.read_text(encoding="utf-8").splitlines()] if k > 1 else []
    return cyclealign_round.build_round(out, samplers.get(policy, "policy"), samplers.get(c.judge_model, "judge"),
                                        chunk, pool, c, iteration=k, source_model=policy,
                                        judge_model=c.judge_model, seed=seed)


def _round_eval(cfg: LoopConfig, out: Path, k: int, policy: str, samplers: _Samplers) -> dict[str, Any]:
    """The per-round evaluation: the reward on `eval_prompts` (paired against the base from round 1 on) and,
    for CycleAlign with held-out prompts, the agreement rate of the round's model with the judge."""
    from alignkit.evaluate.evaluation import EvalConfig, evaluate

    result: dict[str, Any] = {"model": policy}
    if cfg.eval_prompts:
        base = Path(cfg.output_dir) / "iter_0" / "eval" / "reward"
        ecfg = EvalConfig(model=policy, prompts=cfg.eval_prompts, limit=cfg.n_eval_prompts, reward=cfg.eval_reward,
                          method=f"round {k}", max_new_tokens=cfg.eval_max_new_tokens, temperature=0.0,
                          batch_size=cfg.eval_batch_size, seed=cfg.seed, output_dir=str(out / "reward"),
                          baseline=str(base) if k > 0 else None)
        headline = evaluate(ecfg)
        result["reward"] = headline["reward"]
        paired = headline.get("paired_vs_baseline", {}).get("reward")
        if paired:
            result["paired_vs_base"] = paired
    if cfg.method == "cyclealign" and cfg.cyclealign.heldout_prompts:
        heldout, _ = _cyclealign_chunks(cfg)
        pool_file = out.parent / "data" / "pool.jsonl"
        pool = [json.loads(x) for x in pool_file.read_text(encoding="utf-8").splitlines()] if k > 0 else []
        rows, _ = cyclealign_round.rank_lists(samplers.get(policy, "policy"),
                                              samplers.get(cfg.cyclealign.judge_model, "judge"), heldout, pool,
                                              cfg.cyclealign, seed=cfg.seed + 7)  # the same samples' seed each round
        result["heldout_agreement_rate"] = cyclealign_round.agreement_rate(rows)
    if cfg.method == "ditto":
        result.update(_ditto_eval(cfg, out, k, policy, samplers))
    return result


def _ditto_eval(cfg: LoopConfig, out: Path, k: int, policy: str, samplers: _Samplers) -> dict[str, Any]:
    """Round 0 simulates the evaluation dialogues with M_0 (`iter_0/eval/dialogues.jsonl`); every round scores
    its model on them: the answers' NLL, and the three WikiRoleEval judges when a judge model is set."""
    from alignkit.data.readers.jsonl import write_jsonl
    from alignkit.evaluate.roleplay import roleplay_eval

    c = cfg.ditto
    chars = ditto.read_characters(c.eval_characters or c.characters)
    eval_file = Path(cfg.output_dir) / "iter_0" / "eval" / "dialogues.jsonl"
    if k == 0:
        dialogues, _, _ = ditto.simulate(samplers.get(policy, "policy"), chars, c, c.eval_seed)
        write_jsonl(eval_file, dialogues)
    dialogues = [json.loads(x) for x in eval_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    result: dict[str, Any] = {"answer_nll": ditto.answer_nll(samplers.get(policy, "policy"), dialogues),
                              "eval_dialogues": len(dialogues)}
    if c.judge_model and dialogues:
        turns, summary = roleplay_eval(samplers.get(policy, "policy"), samplers.get(c.judge_model, "judge"),
                                       dialogues, {ch["name"]: ditto.render_profile(ch) for ch in chars},
                                       n=c.judge_samples, temperature=c.judge_temperature,
                                       max_new_tokens=c.eval_max_new_tokens, seed=cfg.seed)
        write_jsonl(out / "roleplay_turns.jsonl", turns)
        result["roleplay"] = summary
    return result


TABLE_KEYS = ("round", "model", "kept", "keep_rate", "mean_quality", "mean_following", "agreement_rate",
              "heldout_agreement_rate", "answer_nll", "consistency", "knowledge", "rejection", "reward",
              "paired_vs_base", "train_steps")


def round_row(k: int, data: dict[str, Any] | None, trained: dict[str, Any] | None, ev: dict[str, Any]
              ) -> dict[str, Any]:
    row: dict[str, Any] = {"round": k, "model": ev.get("model")}
    for key in ("kept", "keep_rate", "mean_quality", "mean_following", "agreement_rate"):
        if data and data.get(key) is not None:
            row[key] = data[key]
    for key in ("heldout_agreement_rate", "answer_nll", "paired_vs_base"):
        if ev.get(key) is not None:
            row[key] = ev[key]
    for key in ("consistency", "knowledge", "rejection"):
        if ev.get("roleplay", {}).get(key) is not None:
            row[key] = ev["roleplay"][key]
    if "reward" in ev:
        row["reward"] = {k2: ev["reward"][k2] for k2 in ("value", "low", "high") if k2 in ev["reward"]}
    if trained:
        row["train_steps"] = trained.get("steps")
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """The per-round table as aligned text (interval columns as value [low, high])."""
    cols = [c for c in TABLE_KEYS if c != "model" and any(c in r for r in rows)]

    def cell(v: Any) -> str:
        if isinstance(v, dict):
            return f"{v.get('value', float('nan')):.3f} [{v.get('low', float('nan')):.3f}, " \
                   f"{v.get('high', float('nan')):.3f}]"
        return f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))

    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def run_loop(cfg: LoopConfig, log: Callable[[str], None] = print,
             sampler_factory: SamplerFactory = default_sampler) -> list[dict[str, Any]]:
    """Run (or resume) the loop; returns the per-round table rows (round 0 = the base)."""
    cfg.validate()
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    check_same_recipe(cfg, root / "config.yaml")  # type: ignore[arg-type]  # any dataclass config
    save_config(cfg, root / "config.yaml")
    stages, samplers = Stages(root, log), _Samplers(sampler_factory)
    table = [round_row(0, None, None, stages.run("iter_0/eval", lambda out: _round_eval(cfg, out, 0, cfg.model,
                                                                                        samplers)))]
    policy = cfg.model
    for k in range(1, cfg.rounds + 1):
        data = stages.run(f"iter_{k}/data", lambda out, p=policy, i=k: _round_data(cfg, out, i, p, samplers))
        if not data.get("kept"):
            raise DataError(f"round {k}: no training records survived the filters ({data.get('dropped')}); the "
                            f"loop stops here rather than train on nothing. See {root / f'iter_{k}' / 'data'}")
        isheep = cfg.method == "isheep"
        start = cfg.model if isheep and cfg.isheep.train_from == "base" else policy
        file = _training_file(root, k, isheep and cfg.isheep.data == "cumulative")
        objective = cfg.cyclealign.objective if cfg.method == "cyclealign" else "sft"
        trained = stages.run(f"iter_{k}/train", lambda out, s=start, f=file, o=objective: _train(cfg, out, s, f, o))
        policy = trained["model"]
        ev = stages.run(f"iter_{k}/eval", lambda out, p=policy, i=k: _round_eval(cfg, out, i, p, samplers))
        row = round_row(k, data, trained, ev)
        (root / f"iter_{k}" / "metrics.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
        table.append(row)
        log(f"round {k}: kept {data['kept']}; the next round's model is {policy}")
    (root / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in table), encoding="utf-8")
    return table
