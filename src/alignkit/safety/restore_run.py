"""`alignkit restore` as a function: load both models, restore, measure harmfulness and utility before and after,
write a plain HF model directory and a report (wave2_feedback_safety.md §6).

Harmful rate (§6.5 step 4) = share of evaluation prompts whose greedy response (`max_new_tokens`, 128 in the
code) the judge calls harmful; the default judge is the refusal heuristic of `alignkit.safety.judges` (harmful ⇔
does not refuse), a proxy for the paper's ShieldLM; `--judge SPEC` takes any reward spec. Intervals: bootstrap
over prompts; the before/after difference is a paired bootstrap on the same prompts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alignkit.data.records import Prompt
from alignkit.errors import ConfigError, DataError
from alignkit.evaluate.stats import paired_bootstrap, proportion_ci
from alignkit.safety.judges import Judge, make_judge
from alignkit.safety.restore import RestoreConfig, restore_alignment, token_likelihood


def harmful_flags(model: Any, tokenizer: Any, prompts: Sequence[Prompt], judge: Judge, *, max_new_tokens: int = 128,
                  batch_rows: int = 16) -> tuple[list[bool], list[str]]:
    """Greedy responses to `prompts` and the judge's harmful verdict for each."""
    from alignkit.decode.hf import HFSampler

    sampler = HFSampler(model, tokenizer, max_batch_rows=batch_rows)
    responses = [row[0].text for row in sampler.sample(list(prompts), n=1, max_new_tokens=max_new_tokens,
                                                       temperature=0.0)]
    return judge(list(prompts), responses), responses


def _prompts(path: str, what: str) -> list[Prompt]:
    from alignkit.data.io import read_jsonl

    out: list[Prompt] = []
    for line, row in enumerate(read_jsonl(path), start=1):
        p = row.get("prompt")
        if not isinstance(p, (str, list)) or (isinstance(p, str) and not p.strip()):
            raise DataError(f"{what} rows need a non-empty 'prompt'", source=path, line=line, field="prompt")
        out.append(p)
    if not out:
        raise DataError(f"no {what} prompts", source=path)
    return out


def run_restore(aligned: str, finetuned: str, harmful_prompts: str, task_data: str, out_dir: str | Path, *,
                cfg: RestoreConfig | None = None, eval_prompts: str | None = None, judge: str | None = None,
                judge_threshold: float = 0.5, max_new_tokens: int = 128, overwrite: bool = False, seed: int = 0,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Restore `finetuned` towards `aligned` and write OUT/model (plain HF directory) and OUT/report.json.

    harmful_prompts: rows with `prompt` (the harmful direction; also the harm evaluation unless `eval_prompts`).
    task_data: SFT rows (`prompt`, `completion`): the task direction (prompts) and the task metric
        (inverse perplexity of the completions, `token_likelihood`).
    """
    from alignkit.data.io import read_records
    from alignkit.models import load_model, merge_and_save

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace it")
    cfg = cfg or RestoreConfig()
    harm = _prompts(harmful_prompts, "harmful")
    evals = _prompts(eval_prompts, "evaluation") if eval_prompts else harm
    task = read_records(task_data, "sft").records
    if not task:
        raise DataError("no task records", source=task_data)
    a_model, tok = load_model(aligned, seed=seed)
    f_model, f_tok = load_model(finetuned, seed=seed)
    if hasattr(f_model, "merge_and_unload"):
        f_model = f_model.merge_and_unload()  # §6.1: merge LoRA first
    if hasattr(a_model, "merge_and_unload"):
        a_model = a_model.merge_and_unload()
    if tok.get_vocab() != f_tok.get_vocab():
        raise ConfigError("aligned and fine-tuned models must share a tokenizer")
    judge_fn = make_judge(judge, judge_threshold)
    metric = token_likelihood(tok, task, cfg.template)

    before, _ = harmful_flags(f_model, tok, evals, judge_fn, max_new_tokens=max_new_tokens)
    aligned_flags, _ = harmful_flags(a_model, tok, evals, judge_fn, max_new_tokens=max_new_tokens)
    result = restore_alignment(a_model, f_model, tok, harm, metric, [r.prompt for r in task], cfg, log=log)
    after, responses = harmful_flags(result.model, tok, evals, judge_fn, max_new_tokens=max_new_tokens)
    utility_after = metric(result.model)
    merge_and_save(result.model, tok, out / "model")
    report = {
        "aligned": aligned, "finetuned": finetuned, "config": cfg.__dict__, "judge": judge or "refusal",
        "eval_prompts": len(evals),
        "harmful_rate": {"aligned": proportion_ci(aligned_flags).as_dict(),
                         "finetuned": proportion_ci(before).as_dict(), "restored": proportion_ci(after).as_dict(),
                         "restored_minus_finetuned": paired_bootstrap(after, before, seed=seed).as_dict()},
        "utility": {"metric": "token_likelihood (exp mean log p of task completions)",
                    "finetuned": result.score_finetuned, "restored": utility_after, "threshold": result.threshold,
                    "relative_drop": 1.0 - utility_after / result.score_finetuned if result.score_finetuned else None},
        "restore": result.as_dict(),
        "model_dir": str(out / "model"),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    with (out / "responses.jsonl").open("w") as f:
        for p, r, h in zip(evals, responses, after, strict=True):
            f.write(json.dumps({"prompt": p, "response": r, "harmful": h}) + "\n")
    return report
