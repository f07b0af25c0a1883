"""`alignkit demo`: the whole alignment loop on the embedded SmolLM2-135M-Instruct, offline, on a CPU.

Stages (each writes its own run directory under `output_dir` and a `.done` marker, so an interrupted demo resumes
where it stopped; stages are themselves resumable: generation and data building append as they go, training
resumes from its latest checkpoint):

1. `base`:       evaluate the base model on the test split of the constraint prompt suite;
2. `data`:       build preference data with the verifier (ACT) builder on the train split: n samples per prompt
                 scored by constraint satisfaction rate, kept as ranked lists and as best-vs-worst pairs;
3. `dpo`, `lipo`: train with DPO (LoRA) on the pairs and with LiPO-λ (LoRA) on the lists;
4. `dpo-eval`, `lipo-eval`: evaluate both trained models the same way as the base (and KL to the base);
5. `bon`, `qalign`: best-of-N and QAlign on the base model with the verifier reward, at matched compute;
6. `report.html` with a summary table and plots; the table is printed at the end.

Every evaluation samples at temperature 1, so the KL estimates are unbiased and every method is compared as a
sampling policy. The test-time strategies use the CSR verifier as their reward, which is the same signal the
trained models were aligned on; the report says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alignkit.config import save_config
from alignkit.pipelines.stages import Stages

QUICK = {"n_train_prompts": 16, "n_test_prompts": 16, "n_samples": 4, "max_new_tokens": 48, "bon_n": 4,
         "qalign_steps": 6, "epochs": 2.0}


@dataclass
class DemoConfig:
    model: str = "smollm2-135m-instruct"
    output_dir: str = "runs/demo"
    quick: bool = False
    train_prompts: str = "suite:train"  # or a JSONL of prompts with IFEval-style `constraints`
    test_prompts: str = "suite:test"
    n_train_prompts: int = 64
    n_test_prompts: int = 48
    n_samples: int = 4  # samples per train prompt for the verifier builder
    max_new_tokens: int = 64
    temperature: float = 1.0
    bon_n: int = 4
    qalign_steps: int = 6  # MH steps; each proposes a suffix, about half a completion on average
    qalign_beta: float = 0.1
    listwise_objective: str = "lipo_lambda"
    lora_r: int = 16
    lr: float = 2e-4
    beta: float = 0.1
    epochs: float = 2.0
    batch_size: int = 4
    gen_batch_size: int = 16
    seed: int = 0

    def resolved(self) -> DemoConfig:
        return replace(self, **QUICK) if self.quick else self


def _eval_cfg(cfg: DemoConfig, out: Path, method: str, **kw: Any) -> Any:
    from alignkit.evaluate.evaluation import EvalConfig

    return EvalConfig(model=cfg.model, prompts=cfg.test_prompts, limit=cfg.n_test_prompts, reward="csr", method=method,
                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                      batch_size=cfg.gen_batch_size, seed=cfg.seed, output_dir=str(out), **kw)


def _build_data(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    from alignkit.data.build.common import SamplingSettings, items_from_prompts, load_prompts
    from alignkit.data.build.runner import run_build
    from alignkit.data.build.verifier import VerifierBuilder
    from alignkit.data.convert import listwise_to_pairwise
    from alignkit.data.io import read_records, write_records
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tokenizer = load_model(cfg.model)
    settings = SamplingSettings(n=cfg.n_samples, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                seed=cfg.seed)
    builder = VerifierBuilder(HFSampler(model, tokenizer), sampling=settings, fmt="listwise", policy_name=cfg.model)
    prompts = load_prompts(cfg.train_prompts)[: cfg.n_train_prompts]
    report = run_build(builder, items_from_prompts(prompts), out / "lists.jsonl", batch_size=cfg.gen_batch_size // 2)
    lists = read_records(out / "lists.jsonl", kind="listwise").records
    pairs, stats = listwise_to_pairwise(lists, mode="best-vs-worst")
    write_records(out / "pairs.jsonl", pairs)
    return {"prompts": len(prompts), "lists": len(lists), "pairs": len(pairs), "build": str(report.summary()),
            "convert": stats.summary()}


def _train(cfg: DemoConfig, out: Path, objective: str, data: Path) -> dict[str, Any]:
    from alignkit.models import LoraConfig
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train

    n_records = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
    tcfg = TrainConfig(model=cfg.model, data=str(data), objective=objective, beta=cfg.beta, output_dir=str(out),
                       batch_size=min(cfg.batch_size, n_records), lr=cfg.lr, epochs=cfg.epochs, warmup_steps=2,
                       max_length=cfg.max_new_tokens + 192, lora=LoraConfig(r=cfg.lora_r, alpha=2 * cfg.lora_r),
                       reference="adapter", save_every=10, seed=cfg.seed,
                       resume=(out / "checkpoints").exists())
    result = train(tcfg)
    return {"steps": result.steps, "final": str(result.final_dir), **{k: v for k, v in result.summary.items()
                                                                      if isinstance(v, int | float | str)}}


def _trained_eval(cfg: DemoConfig, out: Path, method: str, run_dir: Path, base_eval: Path) -> dict[str, Any]:
    from alignkit.evaluate.evaluation import evaluate
    from alignkit.models import load_model
    from alignkit.train.engine import export

    # A merged plain model samples faster than one with adapter hooks.
    merged = run_dir / "merged"
    if not (merged / "config.json").exists():
        export(run_dir, merged)
    model, tokenizer = load_model(str(merged))
    return evaluate(_eval_cfg(cfg, out, method, reference_model=cfg.model, baseline=str(base_eval)),
                    model, tokenizer)


def _strategy(cfg: DemoConfig, out: Path, strategy: str, base_eval: Path) -> dict[str, Any]:
    from alignkit.data.build.common import load_prompts
    from alignkit.decode.bon import best_of_n
    from alignkit.decode.hf import HFSampler
    from alignkit.decode.qalign import qalign
    from alignkit.evaluate.evaluation import evaluate
    from alignkit.evaluate.kl import bon_kl_bound
    from alignkit.models import load_model
    from alignkit.rewards.registry import load_reward

    model, tokenizer = load_model(cfg.model)
    sampler = HFSampler(model, tokenizer)
    reward = load_reward("csr")
    prompts = load_prompts(cfg.test_prompts)[: cfg.n_test_prompts]
    rows = []
    from tqdm.auto import tqdm

    chunk = max(1, cfg.gen_batch_size // (cfg.bon_n if strategy == "bon" else 1))
    for start in tqdm(range(0, len(prompts), chunk), desc=strategy, unit="batch"):
        batch = prompts[start:start + chunk]
        contexts = [{"constraints": [dict(c) for c in p.constraints]} for p in batch]
        if strategy == "bon":
            results = best_of_n(sampler, reward, [p.prompt for p in batch], n=cfg.bon_n,
                                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                seed=cfg.seed + start, contexts=contexts)
        else:
            results = qalign(sampler, reward, [p.prompt for p in batch], steps=cfg.qalign_steps,
                             beta=cfg.qalign_beta, max_new_tokens=cfg.max_new_tokens, select_by="last",
                             seed=cfg.seed + start, contexts=contexts)
        for i, (p, r) in enumerate(zip(batch, results, strict=True)):
            rows.append({"id": str(p.metadata.get("id", start + i)), "prompt": p.prompt, "completion": r.completion,
                         "compute": r.compute.as_dict(), "strategy": strategy,
                         "budget": cfg.bon_n if strategy == "bon" else cfg.qalign_steps,
                         "info": {k: v for k, v in r.info.items() if isinstance(v, int | float | str)}})
    samples = out / "strategy_samples.jsonl"
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    headline = evaluate(_eval_cfg(cfg, out, f"{strategy} (base)", samples=str(samples), baseline=str(base_eval)))
    if strategy == "bon":
        # The analytic bound log N − (N−1)/N (objectives.md §10) is BoN's KL to the base policy.
        headline["kl"] = {"value": bon_kl_bound(cfg.bon_n), "low": bon_kl_bound(cfg.bon_n),
                          "high": bon_kl_bound(cfg.bon_n), "n": 0, "note": "analytic bound"}
    else:
        rates = [r["info"].get("acceptance_rate") for r in rows if "acceptance_rate" in r["info"]]
        headline["qalign_acceptance_rate"] = sum(rates) / len(rates) if rates else None
    (out / "eval.json").write_text(json.dumps(headline, indent=2), encoding="utf-8")
    return headline


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> Path:
    """Run every stage (skipping finished ones) and write `report.html`; returns the report path."""
    from alignkit.evaluate.evaluation import evaluate
    from alignkit.evaluate.report import print_summary, summary_table, write_html, write_markdown

    cfg = cfg.resolved()
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, root / "config.yaml")
    stages = Stages(root, log)
    base_eval = root / "base"
    stages.run("base", lambda out: evaluate(_eval_cfg(cfg, out, "base")))
    data = stages.run("data", lambda out: _build_data(cfg, out))
    if not data.get("pairs"):
        log("the verifier builder found no prompt whose samples differ in constraint satisfaction; "
            "nothing to train on (try more prompts or samples)")
    runs = [base_eval]
    if data.get("pairs"):
        for name, objective, file in (("dpo", "dpo", "pairs.jsonl"), ("lipo", cfg.listwise_objective, "lists.jsonl")):
            stages.run(name, lambda out, o=objective, f=file: _train(cfg, out, o, root / "data" / f))
            stages.run(f"{name}-eval", lambda out, n=name: _trained_eval(cfg, out, n, root / n, base_eval))
            runs += [root / name, root / f"{name}-eval"]
    for strategy in ("bon", "qalign"):
        stages.run(strategy, lambda out, s=strategy: _strategy(cfg, out, s, base_eval))
        runs.append(root / strategy)
    report = write_html(runs, root / "report.html", title="alignkit demo: SmolLM2-135M-Instruct on constraint prompts")
    write_markdown(runs, root / "report.md", title="alignkit demo")
    print_summary(summary_table([r for r in runs if (r / "eval.json").exists()]))
    log(f"report: {report}")
    return report
