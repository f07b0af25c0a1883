"""`alignkit eval`: evaluate a model (or a samples file) on a prompt set and write a run directory.

What it measures (testtime_eval.md Part B; every headline number with a bootstrap CI):
- constraint following, IFEval prompt- and instruction-level accuracy, strict and loose (B8), for prompts that
  carry verifiable constraints;
- reward under any Reward (`--reward`): mean and distribution;
- win rate against a baseline run's samples (matched by prompt id, ties count half), under the same reward: the
  baseline's stored rewards are used only if they come from the same reward spec, else its completions are
  rescored (`alignkit.evaluate.baseline`); `paired_vs_baseline` holds the paired-bootstrap difference to the
  baseline (reward, constraint accuracy) over the same prompt ids;
- KL(policy ‖ reference): Monte-Carlo estimate from the policy's own samples at temperature 1 and top_p 1 (the only
  setting where they are samples of π), with the reference model's log-probs of the same tokens; any other
  temperature is refused rather than reported biased (`--reference-model` needs `--temperature 1`).

Generation is resumable: rows already in `samples.jsonl` (matched by prompt id) are kept and not regenerated. A
resume must use the same generation settings (model, samples, max_new_tokens, temperature, top_p, template,
chat_template; when sampling
also seed and batch_size) as the run's config.yaml, else it is refused. Batches are cut at fixed positions of the
prompt list and seeded by their position (prompt i draws from seed_for(seed + batch start, i − batch start)), so a
resumed evaluation gives exactly the rows of an uninterrupted one (spec C2.8: record seeds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from tqdm.auto import tqdm

from alignkit.config import save_config
from alignkit.data.records import PromptExample, prompt_text
from alignkit.errors import ConfigError, DataError
from alignkit.rundir import locks_output_dir


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
    batch_size: int = 16  # prompts per sampler call: the unit of seeding and of resume
    # rows per forward pass (None: max(64, batch_size)); below batch_size, a row that finishes hands its place to a
    # waiting prompt of the same call (continuous batching), so the forward batch stays full to the call's end
    max_batch_rows: int | None = None
    seed: int = 0
    n_resamples: int = 2000
    output_dir: str = "runs/eval"
    # prompts meet the chat template as in training (TrainConfig.template / chat_template, issue #16.5): auto
    # (plain strings as one user turn), always, never, chat-only (TRL's: plain strings raw); docs/data.md
    template: Literal["auto", "always", "never", "chat-only"] = "auto"
    chat_template: str | None = None  # a Jinja file (or the template text) replacing the tokenizer's own

    # TRL's name, as TrainConfig accepts it
    CONFIG_ALIASES: ClassVar[dict[str, Any]] = {"chat_template_path": "chat_template"}


def _prompt_id(example: PromptExample, index: int) -> str:
    return str(example.metadata.get("id", index))


def _read_samples(path: Path) -> list[dict[str, Any]]:
    from alignkit.data.io import read_jsonl

    return read_jsonl(path) if path.exists() else []


def _constraints(example: PromptExample) -> list[dict[str, Any]]:
    return [dict(c) for c in example.constraints]


# Config keys that decide what a generated row is: resuming under other values would mix two evaluations.
_GENERATION_KEYS = ("model", "samples", "max_new_tokens", "temperature", "top_p", "template", "chat_template")
_ADDED_LATER = {"template": "auto", "chat_template": None}  # absent from older config.yaml files: their defaults
_SAMPLING_KEYS = ("seed", "batch_size")  # decide the random streams, so they matter only when sampling


def check_resume(cfg: EvalConfig, out_dir: Path) -> None:
    """Refuse to resume into `out_dir` when its samples were generated under other settings (issue #14.9)."""
    samples = out_dir / "samples.jsonl"
    if cfg.samples or not samples.is_file() or not samples.read_bytes().strip():
        return
    cfg_path = out_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{samples} has rows but no config.yaml records how they were generated, so they cannot "
                          "be resumed safely: remove samples.jsonl or choose another --output-dir")
    import yaml

    try:
        old = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"invalid YAML: {e}", source=str(cfg_path)) from e
    if not isinstance(old, dict):
        raise DataError("expected a mapping at the top level", source=str(cfg_path))
    keys = _GENERATION_KEYS + (_SAMPLING_KEYS if cfg.temperature > 0 else ())
    there = {k: old.get(k, _ADDED_LATER.get(k)) for k in keys}
    diff = [f"{k}: {there[k]!r} there, {getattr(cfg, k)!r} now" for k in keys if there[k] != getattr(cfg, k)]
    if diff:
        raise ConfigError(f"cannot resume {out_dir}: its samples.jsonl was generated with other settings "
                          f"({'; '.join(diff)}). Use the same settings, another --output-dir, or remove samples.jsonl")


def cut_torn_last_line(path: Path, log: Callable[[str], None] = print) -> bool:
    """Truncate `path` to its last complete line if the last non-blank one is torn (not JSON: the run was killed
    mid-write); True if it cut. A last line that parses but lost its newline is complete (no proper prefix of one
    JSON object is one), so it only gets the newline back, and resumed appends start on a line of their own."""
    data = path.read_bytes()
    body = data.rstrip()
    if not body:
        return False
    start = body.rfind(b"\n") + 1
    lineno = body.count(b"\n") + 1  # of the last non-blank line
    try:
        json.loads(body[start:].decode("utf-8-sig" if start == 0 else "utf-8"))
    except ValueError:  # JSONDecodeError, or UnicodeDecodeError where a multi-byte character was cut
        with path.open("r+b") as f:
            f.truncate(start)
        log(f"{path}:{lineno}: torn last line (an interrupted write) removed")
        return True
    if not data.endswith(b"\n"):
        with path.open("ab") as f:
            f.write(b"\n")
    return False


def _done_rows(out: Path, prompts: list[PromptExample], log: Callable[[str], None] = print
               ) -> dict[str, dict[str, Any]]:
    """Rows of a previous (interrupted) run, checked to answer the prompts that now carry their ids.

    The rule of `alignkit.train.loop.read_metrics_lines` (issue #14): a torn *last* line, which only an interrupted
    append leaves, is cut off with a note; a bad line anywhere else, or a whole last line of the wrong shape (an
    array, a repeated key), is damage this code did not cause: a DataError at FILE:LINE, the file left as it is."""
    from alignkit.data.readers.jsonl import iter_jsonl_rows

    expected = {_prompt_id(p, i): p.prompt for i, p in enumerate(prompts)}
    done: dict[str, dict[str, Any]] = {}
    if not out.exists():
        return done
    rows = list(iter_jsonl_rows(out))
    last_error: DataError | None = None
    for k, (line, row) in enumerate(rows):
        if isinstance(row, DataError):
            if k < len(rows) - 1:
                raise row
            last_error = row
            break
        if "id" not in row:
            continue
        pid = str(row["id"])
        if pid in expected and "prompt" in row and json.dumps(row["prompt"], sort_keys=True) != \
                json.dumps(expected[pid], sort_keys=True):
            raise DataError(f"resumed row for prompt id {pid!r} answers another prompt than the current one; "
                            "remove samples.jsonl or choose another --output-dir", source=str(out), line=line,
                            field="prompt")
        done[pid] = row
    if not cut_torn_last_line(out, log) and last_error is not None:
        raise last_error
    return done


def generate_samples(cfg: EvalConfig, prompts: list[PromptExample], out: Path, model: Any = None,
                     tokenizer: Any = None) -> list[dict[str, Any]]:
    """Greedy (or sampled) completions for every prompt, appended to `out` as they finish (resumable).

    Batches are the fixed slices prompts[k·B:(k+1)·B] (B = batch_size) seeded with seed + k·B, whatever was done
    before, so each prompt's sample depends only on (seed, B, its position) and resumed == uninterrupted."""
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    done = _done_rows(out, prompts)
    batches = [[(i, prompts[i]) for i in range(start, min(start + cfg.batch_size, len(prompts)))]
               for start in range(0, len(prompts), cfg.batch_size)]
    batches = [b for b in batches if any(_prompt_id(p, i) not in done for i, p in b)]
    if batches:
        if model is None:
            if cfg.model is None:
                raise ConfigError("eval needs --model (to generate) or --samples (to score existing outputs)")
            model, tokenizer = load_model(cfg.model, chat_template=cfg.chat_template)
        # Rows per forward pass: on a CPU a decode step costs nearly the same for 32 rows as for 128 (the LM head and
        # MLP GEMMs are far from their peak at small batch), so a large eval batch is ~1.5x faster per prompt.
        sampler = HFSampler(model, tokenizer, template=cfg.template,
                            max_batch_rows=cfg.max_batch_rows or max(64, cfg.batch_size), progress=True)
        todo = sum(len(b) for b in batches)
        with out.open("a", encoding="utf-8") as f, tqdm(total=todo, desc="generating", unit="prompt") as bar:
            for chunk in batches:
                start = chunk[0][0]
                before = sampler.compute.as_dict()
                t0 = time.perf_counter()
                results = sampler.sample([p.prompt for _, p in chunk], n=1, max_new_tokens=cfg.max_new_tokens,
                                         temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed + start)
                seconds = time.perf_counter() - t0
                after = sampler.compute.as_dict()
                per = {k: (after[k] - before[k]) / len(chunk) for k in after}
                for (i, p), samples in zip(chunk, results, strict=True):
                    if _prompt_id(p, i) in done:  # a batch cut short by an interrupt: keep what was written
                        continue
                    s = samples[0]
                    row = {"id": _prompt_id(p, i), "prompt": p.prompt, "completion": s.text,
                           "finish_reason": s.finish_reason, "logprob": s.logprob, "token_ids": list(s.token_ids),
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


def check_kl_config(cfg: EvalConfig) -> None:
    """The KL estimate is a mean over samples *of the policy*: only temperature 1 and top_p 1 draw from π itself;
    greedy or tempered samples make it biased, so they are refused (issue #13.6), not flagged and reported."""
    if not cfg.reference_model:
        return
    if cfg.temperature != 1.0 or cfg.top_p != 1.0:
        raise ConfigError(f"--reference-model: the KL estimate needs samples drawn from the policy at temperature 1 "
                          f"and top_p 1 (got temperature={cfg.temperature}, top_p={cfg.top_p}); greedy or truncated "
                          "samples give a biased estimate. Add --temperature 1 (with --samples: only if they were "
                          "drawn that way) or drop --reference-model")
    if cfg.model is None:
        raise ConfigError("--reference-model needs --model: the policy whose samples are scored (log π − log π_ref)")


def _kl(cfg: EvalConfig, prompt_examples: list[PromptExample], rows: list[dict[str, Any]], model: Any,
        tokenizer: Any) -> dict[str, Any]:
    from alignkit.decode.hf import HFSampler
    from alignkit.evaluate.kl import kl_estimate
    from alignkit.models import load_model, load_tokenizer

    # the reference reads the same rendered prompts (same template) so log π − log π_ref compares like with like
    ref_model, ref_tok = load_model(cfg.reference_model, chat_template=cfg.chat_template)  # type: ignore[arg-type]
    prompts = [p.prompt for p in prompt_examples]  # a --samples file need not repeat the prompts
    # the sampled ids are only meaningful to the reference if both tokenizers share one vocabulary
    if (not cfg.samples and all("token_ids" in r and "logprob" in r for r in rows)
            and (tokenizer or load_tokenizer(cfg.model)).get_vocab() == ref_tok.get_vocab()):  # type: ignore[arg-type]
        # This run sampled them at temperature 1, top_p 1: each row's `logprob` is already log π(y|x) of the
        # sampled tokens (EOS included), so only the reference scores, the same token ids (no re-tokenisation).
        completions: list[Any] = [r["token_ids"] for r in rows]
        pol = [float(r["logprob"]) for r in rows]
        scored = "the sampled token ids (EOS included); log pi from sampling"
    else:
        completions = [r["completion"] for r in rows]
        if model is None:
            model, tokenizer = load_model(cfg.model, chat_template=cfg.chat_template)  # type: ignore[arg-type]
        pol = [sum(x) for x in HFSampler(model, tokenizer, template=cfg.template).score_logprobs(prompts,
                                                                                                   completions)]
        scored = "the completion texts, re-tokenised"
    ref = [sum(x) for x in HFSampler(ref_model, ref_tok, template=cfg.template).score_logprobs(prompts, completions)]
    est = kl_estimate(pol, ref, seed=cfg.seed, n_resamples=cfg.n_resamples)
    return {**_est(est), "unit": "nats per sequence", "reference_model": cfg.reference_model,
            "estimator": "mean of log pi(y|x) - log pi_ref(y|x) over y sampled from the policy at temperature 1, "
                         "top_p 1", "scored": scored, "temperature": cfg.temperature, "top_p": cfg.top_p}


def _est(e: Any) -> dict[str, Any]:
    return {"value": float(e.value), "low": float(e.low), "high": float(e.high), "n": int(e.n)}


def _score(cfg: EvalConfig, reward: Any, prompts: list[PromptExample], completions: list[str]) -> list[float]:
    from alignkit.rewards.base import check_result

    context: dict[str, Any] = {"constraints": [_constraints(p) for p in prompts],
                               "references": [list(p.references) for p in prompts]}
    return [float(x) for x in check_result(cfg.reward, reward([p.prompt for p in prompts], completions, **context),
                                           len(completions)).scores]


def _strict_all(prompts: list[PromptExample], completions: list[str], idx: list[int]
                ) -> tuple[list[list[bool]], list[list[bool]]]:
    from alignkit.evaluate.ifeval import check_instructions

    return check_instructions(
        [prompt_text(prompts[i].prompt) for i in idx], [completions[i] for i in idx],
        [[c["id"] for c in _constraints(prompts[i])] for i in idx],
        [[c.get("kwargs", {}) or {} for c in _constraints(prompts[i])] for i in idx])


def _compare_baseline(cfg: EvalConfig, reward: Any, prompts: list[PromptExample], rows: list[dict[str, Any]],
                      constrained: list[int], strict: list[list[bool]]) -> dict[str, Any]:
    """win_rate, baseline ("before") and paired_vs_baseline, all over the same prompt ids and the same reward."""
    from alignkit.evaluate.baseline import baseline_reward_spec, baseline_rows, stored_rewards
    from alignkit.evaluate.reward import win_rate
    from alignkit.evaluate.stats import mean_ci, paired_bootstrap, proportion_ci

    assert cfg.baseline is not None
    kw = {"seed": cfg.seed, "n_resamples": cfg.n_resamples}
    base = baseline_rows(cfg.baseline, prompts, [r["id"] for r in rows])
    stored = stored_rewards(base) if baseline_reward_spec(cfg.baseline) == cfg.reward else None
    base_rewards = stored if stored is not None else _score(cfg, reward, prompts, [r["completion"] for r in base])
    rewards = [float(r["reward"]) for r in rows]
    how = "stored" if stored is not None else "rescored"
    out: dict[str, Any] = {
        "win_rate": {**_est(win_rate(rewards, base_rewards, **kw)), "baseline": cfg.baseline,
                     "baseline_rewards": how},
        "baseline": {"reward": {**_est(mean_ci(base_rewards, **kw)), "name": cfg.reward, "rewards": how}},
        "paired_vs_baseline": {"reward": _est(paired_bootstrap(rewards, base_rewards, **kw))},
    }
    if constrained:
        base_strict, _ = _strict_all(prompts, [r["completion"] for r in base], constrained)
        ours = [float(all(s)) for s in strict]
        theirs = [float(all(s)) for s in base_strict]
        out["baseline"]["constraint_accuracy"] = _est(proportion_ci(theirs, **kw))
        out["paired_vs_baseline"]["constraint_accuracy"] = _est(paired_bootstrap(ours, theirs, **kw))
    return out


@locks_output_dir()  # one run per output directory (issue #14.8)
def evaluate(cfg: EvalConfig, model: Any = None, tokenizer: Any = None) -> dict[str, Any]:
    """Run the evaluation and write `config.yaml`, `samples.jsonl` and `eval.json` into `cfg.output_dir`."""
    from alignkit.data.build.common import load_prompts
    from alignkit.evaluate.guards import guard_metrics
    from alignkit.evaluate.ifeval import ifeval_accuracy
    from alignkit.evaluate.stats import DEFAULT_LEVEL, DEFAULT_METHOD, mean_ci
    from alignkit.rewards.registry import load_reward

    check_kl_config(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_resume(cfg, out_dir)  # before config.yaml is overwritten with this run's settings
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
    scores = _score(cfg, reward, prompts, [r["completion"] for r in rows])
    for row, score in zip(rows, scores, strict=True):
        row["reward"] = score
        row["compute"] = {**row.get("compute", {}), "reward_calls": row.get("compute", {}).get("reward_calls", 0) + 1}
    # Rewrite the samples with their rewards (atomically) so reports and later win rates can read them.
    tmp = samples_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(samples_path)

    headline: dict[str, Any] = {"method": cfg.method or cfg.model or Path(cfg.samples or "samples").stem,
                                "n_prompts": len(prompts)}
    # How every interval below was computed, so a reader can reproduce it (testtime_eval.md C2.8: record seeds
    # and sample counts): alignkit.evaluate.stats' defaults, resampling prompts.
    headline["bootstrap"] = {"method": DEFAULT_METHOD, "n_resamples": cfg.n_resamples, "confidence": DEFAULT_LEVEL,
                             "seed": cfg.seed, "unit": "prompt"}
    headline["reward"] = {**_est(mean_ci(scores, seed=cfg.seed, n_resamples=cfg.n_resamples)), "name": cfg.reward}
    constrained = [i for i, p in enumerate(prompts) if p.constraints]
    strict: list[list[bool]] = []
    if constrained:
        strict, loose = _strict_all(prompts, [r["completion"] for r in rows], constrained)
        acc = ifeval_accuracy(strict, loose, [[c["id"] for c in _constraints(prompts[i])] for i in constrained],
                              seed=cfg.seed, n_resamples=cfg.n_resamples)
        headline["ifeval"] = {k: _est(getattr(acc, k)) for k in
                              ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")}
        # Per instruction type (full id and its tier0 prefix), strict and loose: {type: {followed, total, accuracy}}.
        headline["ifeval"].update({k: v for k, v in acc.as_dict().items() if k.startswith("by_")})
        headline["constraint_accuracy"] = headline["ifeval"]["prompt_strict"]
    headline["guards"] = guard_metrics([r["completion"] for r in rows], [r.get("finish_reason") for r in rows],
                                       [p.metadata.get("base_task") for p in prompts])
    if cfg.baseline:
        headline.update(_compare_baseline(cfg, reward, prompts, rows, constrained, strict))
    if cfg.reference_model:
        headline["kl"] = _kl(cfg, prompts, rows, model, tokenizer)
    totals: dict[str, float] = {}
    for r in rows:
        for k, v in r.get("compute", {}).items():
            if isinstance(v, int | float):
                totals[k] = totals.get(k, 0.0) + float(v)
    headline["compute"] = totals
    (out_dir / "eval.json").write_text(json.dumps(headline, indent=2), encoding="utf-8")
    return headline
