"""The online RL loop (GRPO, RLOO, GRPO-LOO) on the offline engine's pieces: Accelerate, the completion-only log-prob kernel
(`train.logps`), reference modes (`train.reference`), atomic checkpoints (`train.checkpoint`), the LR schedule and
`metrics.jsonl` writer (`train.loop`). One step:
1. this process's `batch_size × grad_accum` prompts (a pure function of seed, step and rank);
2. `num_generations` completions per prompt through the Sampler protocol (seeded by seed and step: a resumed run
   samples what an uninterrupted one would), scored by the reward;
3. no-grad log-probs of the sampled tokens under π_old (μ = num_iterations > 1, or RLOO's KL with β > 0) and π_ref
   (β > 0: LoRA adapters off, a separate model, or none), all of softmax(logits / T) (rl.logps, as TRL);
4. advantages per prompt group (GRPO: group-relative; RLOO: leave-one-out on r − β·Σ_t(log π_old − log π_ref);
   GRPO-LOO: leave-one-out on r; objectives.md §9.1), or per token with `token_rewards: dense` (rl.dense);
5. μ passes, each one optimiser step over `grad_accum` micro-batches, the loss normalised by the whole batch's
   token/sequence count (GRPO: per-token clipped ratio + β·k3; RLOO: one clipped ratio per completion; rl.losses);
6. metrics; rollouts to `samples.jsonl` every `log_samples_every` steps; checkpoints every `save_every` steps."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.config import save_config
from alignkit.data.records import PromptExample, prompt_text
from alignkit.decode.sampler import seed_for
from alignkit.errors import ConfigError, TrainingError
from alignkit.rewards.base import Reward, reward_name
from alignkit.rewards.combine import LogSigmoidTransform
from alignkit.rl.advantages import compute_advantages, group_stats
from alignkit.rl.config import OnlineArgs, online_args
from alignkit.rl.data import load_prompts
from alignkit.rl.dense import (
    Advantages,
    advantage_abs,
    check_token_rewards,
    dense_advantages,
    masked_rows,
    micro_advantages,
    sample_advantage,
)
from alignkit.rl.logps import tempered_logps
from alignkit.rl.losses import LossOutput, policy_loss, sequence_kl, sequence_policy_loss
from alignkit.rl.rollout import Rollout, TokenBatch, rollout, rollout_batch
from alignkit.rundir import locks_output_dir, replace_dir
from alignkit.runtime import make_accelerator, make_scheduler, seed_everything, warmup_for
from alignkit.train.checkpoint import (
    latest_valid,
    load_checkpoint,
    prepare_from_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from alignkit.train.config import TrainConfig
from alignkit.train.logps import CompletionLogProbs, as_seq_logprobs
from alignkit.train.loop import MetricsLog, epoch_order, read_metrics_lines
from alignkit.train.reference import adapters_disabled, freeze, resolve_mode

DEFAULT_BETA = {"grpo": 0.04, "rloo": 0.05, "grpo_loo": 0.05}  # TRL 0.17 GRPOConfig / TRL RLOOConfig


@dataclass
class OnlineResult:
    steps: int
    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0
    model: Any = None
    tokenizer: Any = None


def build_reward(args: OnlineArgs, given: Reward | None = None) -> tuple[Reward, Reward, list[LogSigmoidTransform]]:
    """(training reward, raw reward, LSC transforms). The raw reward is one registry spec or a weighted sum of
    several (or `given`); with `reward_transform: log_sigmoid` the training reward is the LSC AND-combination
    Σ_k log σ(r_k − r_ref,k(x)) over the components (rl.lsc, spec §8), whose references the trainer fits."""
    from alignkit.rewards.combine import weighted_sum
    from alignkit.rewards.registry import load_reward
    from alignkit.rl.lsc import lsc_reward

    rewards = [given] if given is not None else [load_reward(s) for s in args.reward_specs()]
    weights = args.reward_weights if given is None else []
    raw = rewards[0] if len(rewards) == 1 and not weights else weighted_sum(rewards, weights or None)
    if args.reward_transform != "log_sigmoid":
        return raw, raw, []
    reward, parts = lsc_reward(rewards, weights or None, args.reward_ref_statistic)
    return reward, raw, parts


def resolve_beta(cfg: TrainConfig) -> float:
    if cfg.beta is not None:
        return float(cfg.beta)
    return float(cfg.objective_args.get("beta", DEFAULT_BETA[cfg.objective]))


def step_prompts(n: int, step: int, per_rank: int, world: int, rank: int, seed: int, shuffle: bool) -> list[int]:
    """Prompt indices of `rank` at `step`: consecutive global batches through seeded epoch permutations (a prompt
    set smaller than one global batch wraps into the next permutation)."""
    global_batch = per_rank * world
    start = step * global_batch + rank * per_rank
    out: list[int] = []
    orders: dict[int, list[int]] = {}
    for pos in range(start, start + per_rank):
        epoch, j = divmod(pos, n)
        if epoch not in orders:
            orders[epoch] = epoch_order(n, epoch, seed, shuffle)
        out.append(orders[epoch][j])
    return out


def _mean(x: Sequence[float]) -> float:
    return float(sum(x) / len(x)) if x else 0.0


def _median(x: Sequence[float]) -> float:
    return float(statistics.median(x)) if x else float("nan")


@dataclass
class Prepared:
    """One rollout's micro-batches with their constant (no-grad) log-probs."""

    chunks: list[list[int]]  # flat sample indices per micro-batch
    batches: list[TokenBatch]
    masks: list[Tensor]
    refs: list[Tensor | None]
    olds: list[Tensor | None]  # None: π_old = the detached policy (μ = 1)
    seq_kl: Tensor | None = None  # RLOO: Σ_t (log π_old − log π_ref) per sample, flat [P·G]
    token_kl: list[list[float]] | None = None  # RLOO with dense token rewards: (log π_old − log π_ref) per token


class OnlineTrainer:
    """Holds the models, optimiser and reward of one run; `train()` runs the loop (see module docstring)."""

    def __init__(self, cfg: TrainConfig, *, reward: Reward | None = None,
                 prompts: Sequence[PromptExample] | None = None, model: Any = None, tokenizer: Any = None,
                 log: Callable[[str], None] = print) -> None:
        from alignkit.decode.hf import HFSampler
        from alignkit.models import finish_tokenizer, load_model

        if cfg.objective not in DEFAULT_BETA:
            raise ConfigError(f"run_online handles {sorted(DEFAULT_BETA)}, not {cfg.objective!r}")
        self.cfg, self.log = cfg, log
        self.args = online_args(cfg.objective, cfg.objective_args)
        self.beta = resolve_beta(cfg)
        self.loss_type = self.args.resolved_loss_type(cfg.objective)
        for name in ("batch_size", "grad_accum"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.max_steps < 1:
            raise ConfigError("online RL needs max_steps >= 1 (the number of rollout steps)")
        if cfg.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {cfg.lr}")
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.accelerator = make_accelerator(cfg.mixed_precision)
        seed_everything(cfg.seed)
        self.records = list(prompts) if prompts is not None else load_prompts(  # --on-bad-record as offline
            cfg.data, self.args.max_prompts, cfg.on_bad_record, log=log,
            skip_report=Path(cfg.output_dir) / "data_skipped.json" if self.accelerator.is_main_process else None)
        if not self.records:
            raise ConfigError("no prompts to train on")
        self.reward, self.raw_reward, self.lsc_parts = build_reward(self.args, reward)
        if model is None:
            model, tokenizer = load_model(cfg.model, lora=cfg.lora, seed=cfg.seed, chat_template=cfg.chat_template)
        elif tokenizer is None:
            raise ConfigError("pass the tokenizer together with the model")
        else:
            tokenizer = finish_tokenizer(tokenizer, cfg.chat_template)  # as the offline engine's given_model
        self.tokenizer = tokenizer
        if self.args.token_rewards == "dense" and hasattr(self.reward, "check_vocabulary"):
            self.reward.check_vocabulary(tokenizer)  # token rewards align 1:1 only under the policy's tokenizer
        self.lora = cfg.lora.enabled or hasattr(model, "disable_adapter")  # a peft model passed in counts too
        mode = resolve_mode(cfg.reference, needs_reference=self.beta != 0.0, lora=self.lora, batch_pairs=False,
                            token_level=True)
        self.ref_mode = mode
        self.ref_runner: nn.Module | None = None
        if mode == "separate":
            ref_model, _ = load_model(cfg.reference_model or cfg.model, seed=cfg.seed)
            self.ref_runner = CompletionLogProbs(freeze(ref_model)).to(self.accelerator.device)
        self.policy = CompletionLogProbs(model)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.adam_betas[0], cfg.adam_betas[1]),
                                           weight_decay=cfg.weight_decay)
        self.total_updates = cfg.max_steps * self.args.num_iterations  # one optimiser step per pass: μ per rollout step
        self.scheduler = make_scheduler(self.optimizer, cfg.scheduler,
                                        warmup_for(cfg.warmup_steps, cfg.warmup_ratio, self.total_updates),
                                        self.total_updates, cfg.scheduler_kwargs)
        self.policy, self.optimizer = self.accelerator.prepare(self.policy, self.optimizer)
        self.raw = self.accelerator.unwrap_model(self.policy)
        # rollouts (and the log-probs trained on) render prompts by the config's template, as offline training
        self.sampler = HFSampler(self.raw.model, tokenizer, template=cfg.template)
        self.pad_id = tokenizer.pad_token_id
        self.selection = None
        if self.args.select != "none":
            self._select_prompts()
        if self.lsc_parts and self.args.reward_ref == "base":
            self._fit_base_references()

    def _fit_base_references(self) -> None:
        """LSC `reward_ref: base`: r_ref,k(x) from the initial policy's samples, before any update (rl.lsc)."""
        from alignkit.rl.lsc import fit_base_references

        a = self.args
        self.policy.eval()
        tables = fit_base_references(self.lsc_parts, self.sampler, self.records, n=a.reward_ref_samples,
                                     max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p,
                                     top_k=a.top_k, stop=a.stop, seed=self.cfg.seed)
        self.log(f"LSC: reference rewards of {len(self.records)} prompts from {a.reward_ref_samples} base samples "
                 f"each ({a.reward_ref_statistic}): " + ", ".join(
                     f"{p.name} median {_median(list(t.values())):.4f}" for p, t in zip(self.lsc_parts, tables,
                                                                                        strict=True)))

    def _select_prompts(self) -> None:
        """BLEUBERI-style selection with the base model, before any update (deterministic given the seed)."""
        from alignkit.rl.select import select_prompts

        a = self.args
        # selection ranks prompts by the raw reward: LSC references are fitted on the selected prompts afterwards
        self.selection = select_prompts(self.sampler, self.raw_reward, self.records, a.select_num, a.select,
                                        max_new_tokens=a.select_max_new_tokens or a.max_new_tokens,
                                        temperature=a.select_temperature, top_p=a.select_top_p, seed=self.cfg.seed)
        scores = self.selection.scores
        kept = self.selection.kept
        if scores:
            self.log(f"selected {len(kept)} {a.select} prompts of {len(self.records)} by base-model reward "
                     f"(mean {_mean([scores[i] for i in kept]):.4f} kept vs {_mean(scores):.4f} all)")
        self.records = self.selection.records

    def _token_logps(self, runner: nn.Module, tb: TokenBatch) -> tuple[Tensor, Tensor]:
        """Per-token log-probs of the sampled tokens under softmax(logits / T), T = the rollout temperature."""
        out = as_seq_logprobs(runner(tb.input_ids, tb.attention_mask, tb.labels, True, kernel=tempered_logps,
                                     temperature=self.args.temperature))
        assert out.tokens is not None and out.mask is not None
        return out.tokens, out.mask

    @torch.no_grad()
    def _reference_logps(self, tb: TokenBatch) -> Tensor | None:
        if self.ref_mode == "none":
            return None
        if self.ref_mode == "separate":
            assert self.ref_runner is not None
            return self._token_logps(self.ref_runner, tb)[0]
        with adapters_disabled(self.raw):
            return self._token_logps(self.raw, tb)[0]

    def _micro_batches(self, n_rows: int) -> list[list[int]]:
        rows = self.cfg.batch_size * self.args.num_generations
        return [list(range(s, min(n_rows, s + rows))) for s in range(0, n_rows, rows)]

    def _prepare(self, ro: Rollout) -> Prepared:
        """Micro-batches and their no-grad log-probs: π_ref when β > 0; π_old when μ > 1, or for RLOO's
        KL-in-reward (which needs log π_old − log π_ref before the advantages)."""
        device = self.accelerator.device
        chunks = self._micro_batches(len(ro.samples))
        batches = [rollout_batch(ro, rows, self.pad_id).to(device) for rows in chunks]
        masks = [(b.labels[:, 1:] != -100) for b in batches]
        self.policy.eval()
        refs = [self._reference_logps(b) for b in batches]
        kl_in_reward = self.cfg.objective == "rloo" and self.beta != 0.0
        olds: list[Tensor | None] = [None] * len(batches)
        seq_kl, token_kl = None, None
        if self.args.num_iterations > 1 or kl_in_reward:
            with torch.no_grad():
                current = [self._token_logps(self.policy, b)[0] for b in batches]
            if kl_in_reward:
                if any(r is None for r in refs):
                    raise ConfigError("beta > 0 needs reference log-probs (set beta: 0 to train without a reference)")
                seq_kl = torch.cat([sequence_kl(o, r, m) for o, r, m in zip(current, refs, masks, strict=True)
                                    if r is not None]).cpu()
                if self.args.token_rewards == "dense":
                    token_kl = [row for o, r, m in zip(current, refs, masks, strict=True) if r is not None
                                for row in masked_rows((o - r).float().cpu(), m.cpu())]
            if self.args.num_iterations > 1:
                olds = list(current)
        return Prepared(chunks, batches, masks, refs, olds, seq_kl, token_kl)

    def _advantages(self, ro: Rollout, prep: Prepared) -> Advantages:
        a, kw = self.args, {"scale": self.args.resolved_scale(), "normalize": self.args.normalize_advantages}
        if a.token_rewards == "dense":
            tokens = check_token_rewards(ro.token_rewards, [s.token_ids for s in ro.samples], reward_name(self.reward))
            return dense_advantages(tokens, a.num_generations, self.cfg.objective, token_kl=prep.token_kl,
                                    beta=self.beta, **kw)
        return compute_advantages(ro.rewards, a.num_generations, self.cfg.objective, seq_kl=prep.seq_kl,
                                  beta=self.beta, **kw)

    def _loss(self, logps: Tensor, mask: Tensor, adv: Tensor, k: int, prep: Prepared, normalizer: float
              ) -> LossOutput:
        a = self.args
        if self.cfg.objective == "rloo" and adv.dim() == 2:  # dense: a clipped ratio per token, Σ_t then mean_i
            return policy_loss(logps, adv, mask, old_logps=prep.olds[k], beta=0.0, epsilon_low=a.epsilon,
                               epsilon_high=a.epsilon_high, aggregation="dr_grpo", normalizer=normalizer)
        if self.cfg.objective == "rloo":
            return sequence_policy_loss(logps, adv, mask, old_logps=prep.olds[k], epsilon_low=a.epsilon,
                                        epsilon_high=a.epsilon_high, normalizer=normalizer)
        return policy_loss(logps, adv, mask, old_logps=prep.olds[k], ref_logps=prep.refs[k], beta=self.beta,
                           epsilon_low=a.epsilon, epsilon_high=a.epsilon_high, aggregation=self.loss_type,
                           max_completion_length=a.max_new_tokens, normalizer=normalizer)

    def _update(self, prep: Prepared, advantages: Advantages) -> dict[str, float]:
        """μ optimiser steps over the rollout batch."""
        device = self.accelerator.device
        n_tokens = float(sum(int(m.sum()) for m in prep.masks))
        n_rows = float(sum(len(c) for c in prep.chunks))
        per_sequence = self.cfg.objective == "rloo" or self.loss_type == "sequence"
        normalizer = n_rows if per_sequence else {"token": max(n_tokens, 1.0),
                                                  "dr_grpo": n_rows * self.args.max_new_tokens}[self.loss_type]
        self.policy.train()
        passes: list[dict[str, float]] = []
        for _ in range(self.args.num_iterations):
            sums: dict[str, float] = {}
            total_loss = 0.0
            for k, (b, rows) in enumerate(zip(prep.batches, prep.chunks, strict=True)):
                last = k == len(prep.batches) - 1
                sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.policy)
                with sync:
                    logps, mask = self._token_logps(self.policy, b)
                    out = self._loss(logps, mask, micro_advantages(advantages, rows, mask).to(device), k, prep,
                                     normalizer)
                    self.accelerator.backward(out.loss)
                total_loss += float(out.loss.detach())
                # metrics averaged over micro-batches by their weight in the loss (sequences or tokens)
                w = len(rows) / n_rows if self.cfg.objective == "rloo" else float(mask.sum()) / max(n_tokens, 1.0)
                for key, v in out.metrics.items():
                    sums[key] = sums.get(key, 0.0) + w * v
            grad_norm = float("nan")
            if self.cfg.max_grad_norm > 0:
                grad_norm = float(self.accelerator.clip_grad_norm_(self.policy.parameters(), self.cfg.max_grad_norm))
            if not math.isfinite(total_loss) or (self.cfg.max_grad_norm > 0 and not math.isfinite(grad_norm)):
                self.optimizer.zero_grad(set_to_none=True)
                raise TrainingError(f"non-finite loss ({total_loss}) or gradient norm ({grad_norm}); lower lr or "
                                    "check the reward for extreme values")
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            passes.append({"loss": total_loss, "grad_norm": grad_norm, **sums})
        keys = passes[0].keys()
        out = {k: _mean([p[k] for p in passes]) for k in keys}
        if prep.seq_kl is not None:  # RLOO: the KL of the reward, per token (as GRPO's `kl`) and per sequence
            out["kl"] = float(prep.seq_kl.sum()) / max(n_tokens, 1.0)
            out["kl_seq"] = float(prep.seq_kl.mean())
        return out

    def _gather(self, t: Tensor) -> Tensor:
        if self.accelerator.num_processes == 1:
            return t
        return self.accelerator.gather(t.to(self.accelerator.device)).cpu()

    def _write_samples(self, path: Path, step: int, ro: Rollout, advantages: Advantages) -> None:
        with path.open("a", encoding="utf-8") as f:
            for k in range(min(len(ro.samples), self.args.samples_per_log)):
                s = ro.samples[k]
                f.write(json.dumps({"step": step, "prompt": prompt_text(ro.prompt_of(k).prompt),
                                    "completion": s.text, "reward": float(ro.rewards[k]),
                                    "advantage": sample_advantage(advantages, k), "tokens": len(s.token_ids),
                                    "finish_reason": s.finish_reason}, ensure_ascii=False) + "\n")

    def train(self) -> OnlineResult:
        cfg, args, acc = self.cfg, self.args, self.accelerator
        run_dir = Path(cfg.output_dir)
        main, world, rank = acc.is_main_process, acc.num_processes, acc.process_index
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
            if self.selection is not None:
                with (run_dir / "selected_prompts.jsonl").open("w", encoding="utf-8") as f:
                    for i, rec in zip(self.selection.kept, self.records, strict=True):
                        base = self.selection.scores[i] if self.selection.scores else None
                        f.write(json.dumps({"index": i, "base_reward": base, "prompt": prompt_text(rec.prompt)},
                                           ensure_ascii=False) + "\n")
            if self.lsc_parts and args.reward_ref == "base":
                from alignkit.rl.lsc import reference_rows

                with (run_dir / "lsc_references.jsonl").open("w", encoding="utf-8") as f:
                    for row in reference_rows(self.lsc_parts, self.records):
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        ckpt_root = run_dir / "checkpoints"
        step = 0
        resumed = None
        if cfg.resume:
            resumed = latest_valid(ckpt_root, log=self.log if main else (lambda _m: None))
            if resumed is None and main:
                self.log(f"--resume: no valid checkpoint under {ckpt_root}; starting from step 0")
        if resumed is not None:
            ck = load_checkpoint(resumed, self.raw, self.optimizer, self.scheduler, rank)
            step = ck.step
            saved_rng = rng_state()
            if main:
                self.log(f"resumed from {resumed} (step {step})")
        metrics_log = MetricsLog(run_dir / "metrics.jsonl", main, step if resumed is not None else None,
                                 cfg.report_to, log=self.log)
        samples_path = run_dir / "samples.jsonl"
        if main and samples_path.exists():
            if resumed is None:
                samples_path.unlink()
            else:  # the metrics.jsonl rule: a torn last line (killed mid-write) is cut, other damage is FILE:LINE
                kept = [ln for ln in read_metrics_lines(samples_path, self.log, what="sample record")
                        if json.loads(ln)["step"] <= step]
                samples_path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
        if resumed is not None:
            set_rng_state(saved_rng)
        start_step = step
        per_rank = cfg.batch_size * cfg.grad_accum
        history: list[dict[str, Any]] = []
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, desc=cfg.objective, disable=not (main and cfg.progress),
                   dynamic_ncols=True)
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            idx = step_prompts(len(self.records), step, per_rank, world, rank, cfg.seed, cfg.shuffle)
            self.policy.eval()
            group_refs = self.lsc_parts if args.reward_ref == "group" else ()
            ro = rollout(self.sampler, self.reward, [self.records[i] for i in idx], group_size=args.num_generations,
                         max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                         top_k=args.top_k, stop=args.stop, seed=seed_for(cfg.seed, step, rank),
                         group_references=group_refs)
            t1 = time.perf_counter()
            prep = self._prepare(ro)
            advantages = self._advantages(ro, prep)
            upd = self._update(prep, advantages)
            t2 = time.perf_counter()
            step += 1
            rewards = self._gather(ro.rewards)
            lengths = self._gather(ro.completion_lengths)
            truncated = self._gather(torch.tensor([float(s.finish_reason == "length") for s in ro.samples]))
            rec: dict[str, Any] = {
                "step": step, "reward": float(rewards.mean()), "reward_std": float(rewards.std()),
                **group_stats(rewards, args.num_generations),
                "completion_length": float(lengths.mean()), "completion_length_max": float(lengths.max()),
                "completion_length_min": float(lengths.min()), "frac_truncated": float(truncated.mean()),
                "advantage_abs": advantage_abs(advantages),
            }
            for name, vals in ro.reward_parts.items():
                rec[f"reward/{name}"] = float(self._gather(torch.tensor(vals)).mean())
            rec.update({k: v for k, v in upd.items() if not (k == "grad_norm" and math.isnan(v))})
            rec.update(lr=self.scheduler.get_last_lr()[0], generated_tokens=ro.compute.generated_tokens * world,
                       rollout_s=round(t1 - t0, 4), update_s=round(t2 - t1, 4), step_s=round(t2 - t0, 4))
            metrics_log.write(rec)
            history.append(rec)
            if main and args.log_samples_every and step % args.log_samples_every == 0:
                self._write_samples(samples_path, step, ro, advantages)
            bar.update(1)
            bar.set_postfix(reward=f"{rec['reward']:.3f}", kl=f"{rec.get('kl', 0.0):.4f}")
            if step == cfg.max_steps or (cfg.save_every and step % cfg.save_every == 0):
                self._checkpoint(ckpt_root, step)
        bar.close()
        metrics_log.close()
        if main:
            self._save_final(run_dir / "final")
        return OnlineResult(step, run_dir, history, start_step, self.raw.model, self.tokenizer)

    def _checkpoint(self, ckpt_root: Path, step: int) -> None:
        acc = self.accelerator
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            rngs = gather_object([rng_state()])
        else:
            rngs = [rng_state()]
        if acc.is_main_process:
            save_checkpoint(ckpt_root, step, self.raw, self.optimizer, self.scheduler,
                            {"objective": self.cfg.objective, "total_steps": self.cfg.max_steps},
                            lora=self.lora, rank_rng=dict(enumerate(rngs)), keep=self.cfg.keep_checkpoints)
        acc.wait_for_everyone()

    def _save_final(self, out: Path) -> None:
        """The trained policy as an HF directory (the LoRA adapter alone for LoRA runs); a previous `final/` (a
        resumed run's) stays whole until the new one is swapped in (`alignkit.rundir.replace_dir`)."""
        import tempfile

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=out.parent))  # a killed save's is cleaned on the next run
        if self.lora:  # the adapter names its base, so PeftModel and `alignkit eval --model RUN/final` load it
            import json

            from alignkit.models import mark_adapter_base

            info = mark_adapter_base(self.raw.model, self.cfg.model, self.cfg.seed)
            (tmp / "alignkit.json").write_text(json.dumps(info))
        self.raw.model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        replace_dir(tmp, out)


@locks_output_dir(prepare=prepare_from_config)  # lock; refuse to start over a run unasked (issue #14)
def run_online(cfg: TrainConfig, *, reward: Reward | None = None, prompts: Sequence[PromptExample] | None = None,
               model: Any = None, tokenizer: Any = None, log: Callable[[str], None] = print) -> OnlineResult:
    """Train with GRPO or RLOO (`cfg.objective`) on prompts from `cfg.data` (or `prompts`), rewarded by
    `objective_args.reward` (or `reward`, any Reward). Writes `cfg.output_dir`: config.yaml, metrics.jsonl,
    samples.jsonl, checkpoints/, final/."""
    return OnlineTrainer(cfg, reward=reward, prompts=prompts, model=model, tokenizer=tokenizer, log=log).train()
