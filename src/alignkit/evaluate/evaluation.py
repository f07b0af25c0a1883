"""`alignkit eval`: evaluate a model (or a samples file) on a prompt set and write a run directory.

What it measures (testtime_eval.md Part B; every headline number with a bootstrap CI):
- constraint following, IFEval prompt- and instruction-level accuracy, strict and loose (B8), for prompts that
  carry verifiable constraints;
- reward under any Reward (`--reward`): mean and distribution;
- win rate against a baseline run's samples (matched by prompt id, ties count half), under the same reward;
- KL(policy ‖ reference): Monte-Carlo estimate from the policy's own samples, with the reference model's
  log-probs of the same tokens (needs `--reference-model`, and sampling at temperature 1 for an unbiased
  estimate; a greedy run reports it with a warning flag).

Generation is resumable: rows already in `samples.jsonl` (matched by prompt id) are kept and not regenerated.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from alignkit.config import save_config
from alignkit.data.records import PromptExample, prompt_text
from alignkit.errors import ConfigError, DataError


@dataclass
class EvalConfig:
    model: str | None = "smollm2-135m-instruct"
    samples: str | None = None  # an existing samples.jsonl to score instead of generating
    prompts: str = "suite:test"
    limit: int | None = None
    reward: str = "csr"
    reference_model: str | None = None
    baseline: str | None = None  # a run directory (or samples.jsonl) to compute the win rate against
    method: str | None = None
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 16
    seed: int = 0
    n_resamples: int = 2000
    output_dir: str = "runs/eval"


def _prompt_id(example: PromptExample, index: int) -> str:
    return str(example.metadata.get("id", index))


def _read_samples(path: Path) -> list[dict[str, Any]]:
    from alignkit.data.io import read_jsonl

    return read_jsonl(path) if path.exists() else []


def _constraints(example: PromptExample) -> list[dict[str, Any]]:
    return [dict(c) for c in example.constraints]


def generate_samples(cfg: EvalConfig, prompts: list[PromptExample], out: Path, model: Any = None,
                     tokenizer: Any = None) -> list[dict[str, Any]]:
    """Greedy (or sampled) completions for every prompt, appended to `out` as they finish (resumable)."""
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    done = {row["id"]: row for row in _read_samples(out) if "id" in row}
    todo = [(i, p) for i, p in enumerate(prompts) if _prompt_id(p, i) not in done]
    if todo:
        if model is None:
            if cfg.model is None:
                raise ConfigError("eval needs --model (to generate) or --samples (to score existing outputs)")
            model, tokenizer = load_model(cfg.model)
        sampler = HFSampler(model, tokenizer)
        with out.open("a", encoding="utf-8") as f, tqdm(total=len(todo), desc="generating", unit="prompt") as bar:
            for start in range(0, len(todo), cfg.batch_size):
                chunk = todo[start:start + cfg.batch_size]
                before = sampler.compute.as_dict()
                t0 = time.perf_counter()
                results = sampler.sample([p.prompt for _, p in chunk], n=1, max_new_tokens=cfg.max_new_tokens,
                                         temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed + start)
                seconds = time.perf_counter() - t0
                after = sampler.compute.as_dict()
                per = {k: (after[k] - before[k]) / len(chunk) for k in after}
                for (i, p), samples in zip(chunk, results, strict=True):
                    s = samples[0]
                    row = {"id": _prompt_id(p, i), "prompt": p.prompt, "completion": s.text,
                           "finish_reason": s.finish_reason, "logprob": s.logprob,
                           "compute": {**per, "seconds": seconds / len(chunk)}, "strategy": "sample"}
                    done[row["id"]] = row
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                bar.update(len(chunk))
    return [done[_prompt_id(p, i)] for i, p in enumerate(prompts)]


def _rows_from_samples_file(path: str, prompts: list[PromptExample]) -> list[dict[str, Any]]:
    rows = _read_samples(Path(path))
    if not rows:
        raise DataError("no samples found", source=path)
    by_id = {str(r["id"]): r for r in rows if "id" in r}
    out = []
    for i, p in enumerate(prompts):
        pid = _prompt_id(p, i)
        row = by_id.get(pid) if by_id else (rows[i] if i < len(rows) else None)
        if row is None or "completion" not in row:
            raise DataError(f"no completion for prompt id {pid!r}", source=path)
        out.append({**row, "id": pid})
    return out


def _baseline_rewards(baseline: str) -> dict[str, float]:
    path = Path(baseline)
    path = path / "samples.jsonl" if path.is_dir() else path
    rows = _read_samples(path)
    if not rows:
        raise DataError("baseline has no samples", source=str(path))
    missing = [i for i, r in enumerate(rows) if "reward" not in r or "id" not in r]
    if missing:
        raise DataError(f"{len(missing)} baseline rows lack `id` or `reward` (first at row {missing[0] + 1})",
                        source=str(path))
    return {str(r["id"]): float(r["reward"]) for r in rows}


def _baseline_headline(baseline: str) -> dict[str, Any]:
    """The baseline run's constraint accuracy and reward estimates, when it is a run directory with eval.json."""
    path = Path(baseline) / "eval.json"
    if not path.is_file():
        return {}
    try:
        ev = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"bad JSON ({e.msg})", source=str(path), line=e.lineno) from e
    return {k: ev[k] for k in ("constraint_accuracy", "reward") if isinstance(ev.get(k), dict)}


def _kl(cfg: EvalConfig, rows: list[dict[str, Any]], model: Any, tokenizer: Any) -> dict[str, Any]:
    from alignkit.decode.hf import HFSampler
    from alignkit.evaluate.kl import kl_estimate
    from alignkit.models import load_model

    if model is None:
        model, tokenizer = load_model(cfg.model)  # type: ignore[arg-type]
    ref_model, ref_tok = load_model(cfg.reference_model)  # type: ignore[arg-type]
    prompts = [r["prompt"] for r in rows]
    completions = [r["completion"] for r in rows]
    pol = [sum(x) for x in HFSampler(model, tokenizer).score_logprobs(prompts, completions)]
    ref = [sum(x) for x in HFSampler(ref_model, ref_tok).score_logprobs(prompts, completions)]
    est = kl_estimate(pol, ref, seed=cfg.seed)
    return {**_est(est), "sampled_at_temperature": cfg.temperature}


def _est(e: Any) -> dict[str, Any]:
    return {"value": float(e.value), "low": float(e.low), "high": float(e.high), "n": int(e.n)}


def evaluate(cfg: EvalConfig, model: Any = None, tokenizer: Any = None) -> dict[str, Any]:
    """Run the evaluation and write `config.yaml`, `samples.jsonl` and `eval.json` into `cfg.output_dir`."""
    from alignkit.data.build.common import load_prompts
    from alignkit.evaluate.ifeval import check_instructions, ifeval_accuracy
    from alignkit.evaluate.reward import win_rate
    from alignkit.evaluate.stats import mean_ci
    from alignkit.rewards.base import check_result
    from alignkit.rewards.registry import load_reward

    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    prompts = load_prompts(cfg.prompts)[: cfg.limit]
    if not prompts:
        raise DataError("no prompts to evaluate", source=cfg.prompts)
    samples_path = out_dir / "samples.jsonl"
    if cfg.samples:
        rows = _rows_from_samples_file(cfg.samples, prompts)
    else:
        rows = generate_samples(cfg, prompts, samples_path, model, tokenizer)

    reward = load_reward(cfg.reward)
    context: dict[str, Any] = {"constraints": [_constraints(p) for p in prompts],
                               "references": [list(p.references) for p in prompts]}
    result = check_result(cfg.reward, reward([p.prompt for p in prompts], [r["completion"] for r in rows],
                                             **context), len(rows))
    for row, score in zip(rows, result.scores, strict=True):
        row["reward"] = score
        row["compute"] = {**row.get("compute", {}), "reward_calls": row.get("compute", {}).get("reward_calls", 0) + 1}
    # Rewrite the samples with their rewards (atomically) so reports and later win rates can read them.
    tmp = samples_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(samples_path)

    headline: dict[str, Any] = {"method": cfg.method or cfg.model or Path(cfg.samples or "samples").stem,
                                "n_prompts": len(prompts)}
    headline["reward"] = {**_est(mean_ci([r["reward"] for r in rows], seed=cfg.seed, n_resamples=cfg.n_resamples)),
                          "name": cfg.reward}
    constrained = [i for i, p in enumerate(prompts) if p.constraints]
    if constrained:
        strict, loose = check_instructions(
            [prompt_text(prompts[i].prompt) for i in constrained], [rows[i]["completion"] for i in constrained],
            [[c["id"] for c in _constraints(prompts[i])] for i in constrained],
            [[c.get("kwargs", {}) or {} for c in _constraints(prompts[i])] for i in constrained])
        acc = ifeval_accuracy(strict, loose, [[c["id"] for c in _constraints(prompts[i])] for i in constrained],
                              seed=cfg.seed, n_resamples=cfg.n_resamples)
        headline["ifeval"] = {k: _est(getattr(acc, k)) for k in
                              ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")}
        headline["constraint_accuracy"] = headline["ifeval"]["prompt_strict"]
    if cfg.baseline:
        base = _baseline_rewards(cfg.baseline)
        paired = [(r["reward"], base[r["id"]]) for r in rows if r["id"] in base]
        if not paired:
            raise DataError("no prompt ids in common with the baseline", source=cfg.baseline)
        wr = win_rate([a for a, _ in paired], [b for _, b in paired], seed=cfg.seed)
        headline["win_rate"] = {**_est(wr), "baseline": cfg.baseline}
        before = _baseline_headline(cfg.baseline)
        if before:
            headline["baseline"] = before  # the "before" of the report's before/after plot
    if cfg.reference_model:
        headline["kl"] = _kl(cfg, rows, model, tokenizer)
    totals: dict[str, float] = {}
    for r in rows:
        for k, v in r.get("compute", {}).items():
            if isinstance(v, int | float):
                totals[k] = totals.get(k, 0.0) + float(v)
    headline["compute"] = totals
    (out_dir / "eval.json").write_text(json.dumps(headline, indent=2), encoding="utf-8")
    return headline
