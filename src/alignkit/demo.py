"""`alignkit demo`: the whole alignment loop on the embedded SmolLM2-135M-Instruct, offline, on a CPU.

Stages (each writes its own run directory under `output_dir` and a `.done` marker, so an interrupted demo resumes
where it stopped; stages are themselves resumable: generation and data building append as they go, training
resumes from its latest checkpoint):

1. `base`:       evaluate the base model on held-out prompts of the constraint suite (`suite:test`);
2. `data-r1`:    sample n answers per train prompt from the base, score them with the IFEval verifiers (CSR) and
                 keep every sample with its finish reason (`alignkit.pipelines.selfdata`);
3. `rft-r1`:     rejection-sampling fine-tuning (LoRA): SFT on the samples that satisfy every constraint and ended
                 by EOS — the method `recipes/constraints.yaml` measured (docs/efficacy.md); `data-r2`, `rft-r2`:
                 the next round samples fresh prompts from the round-1 model (on-policy), and so on;
4. `rft-eval`:   evaluate the trained model the same way as the base, with KL to the base and the paired gain over
                 the base (bootstrap over prompts);
5. `bon`, `qalign`: best-of-N and QAlign on the base model with the verifier reward, at matched compute;
6. `report.html` with a summary table and plots; the table is printed at the end.

Every evaluation samples once per prompt at temperature 1 with the same per-prompt seeds, so the KL estimates
are unbiased and every method is compared as a sampling policy on the same prompts. The test-time strategies use
the CSR verifier as their reward, which is the same signal the trained models were aligned on; the report says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alignkit.config import save_config
from alignkit.pipelines.stages import Stages

QUICK = {"n_train_prompts": 32, "n_test_prompts": 16, "n_strategy_prompts": 16, "n_samples": 4, "max_new_tokens": 96, "bon_n": 4,
         "qalign_steps": 4, "rounds": 1}


@dataclass
class DemoConfig:
    model: str = "smollm2-135m-instruct"
    output_dir: str = "runs/demo"
    quick: bool = False
    train_prompts: str = "suite:train"  # or a JSONL of prompts with IFEval-style `constraints`
    test_prompts: str = "suite:test"
    n_train_prompts: int = 100  # fresh prompts per round
    n_test_prompts: int = 200
    # best-of-N and QAlign run on the first `n_strategy_prompts` test prompts (None: all): their gains are large, so
    # fewer prompts still give intervals that exclude 0, and the time goes to the base/trained pair, whose smaller
    # difference needs more prompts (the table's `prompts` column says which row used how many)
    n_strategy_prompts: int | None = 48
    n_samples: int = 4  # samples per train prompt, from the current policy
    max_new_tokens: int = 112
    temperature: float = 1.0  # every evaluation, best-of-N and QAlign
    data_temperature: float = 0.8  # the RFT rounds' samples (recipe.RecipeConfig.temperature; docs/efficacy.md #11)
    bon_n: int = 4
    qalign_steps: int = 4  # MH steps; each proposes a suffix, about half a completion on average
    qalign_beta: float = 0.1
    require_eos: bool = True  # RFT keeps only answers that ended by themselves
    rounds: int = 3  # RFT rounds; round r samples fresh train prompts from round r-1's model
    per_prompt: int = 2  # demonstrations kept per prompt
    min_distinct_2: float = 0.9  # passing samples that loop are not demonstrations (selfdata.select_rft; #11)
    lora_r: int = 32
    lr: float = 3e-4
    epochs: float = 3.0
    batch_size: int = 8
    gen_batch_size: int = 128  # sampled rows per forward pass (see recipe.RecipeConfig)
    call_rows: int = 512  # sampled rows per sampler call, kept flowing through the forward batch (recipe.RecipeConfig)
    seed: int = 0

    def resolved(self) -> DemoConfig:
        return replace(self, **QUICK) if self.quick else self

    def recipe(self) -> Any:
        """The same settings as a recipe round (alignkit.pipelines.recipe), so the demo trains as the recipe does."""
        from alignkit.pipelines.recipe import RecipeConfig

        return RecipeConfig(model=self.model, output_dir=self.output_dir, train_prompts=self.train_prompts,
                            test_prompts=self.test_prompts, n_train_prompts=self.n_train_prompts,
                            n_test_prompts=self.n_test_prompts, rounds=self.rounds, method="rft", reward="csr",
                            samples_per_prompt=self.n_samples, require_eos=self.require_eos, max_new_tokens=self.max_new_tokens,
                            temperature=self.data_temperature, eval_temperature=self.temperature, lr=self.lr,
                            per_prompt=self.per_prompt, min_distinct_2=self.min_distinct_2, epochs=self.epochs, batch_size=self.batch_size,
                            lora_r=self.lora_r, gen_batch_size=self.gen_batch_size, call_rows=self.call_rows,
                            seed=self.seed)


def _eval_cfg(cfg: DemoConfig, out: Path, method: str, **kw: Any) -> Any:
    from alignkit.evaluate.evaluation import EvalConfig

    return EvalConfig(model=cfg.model, prompts=cfg.test_prompts, limit=cfg.n_test_prompts, reward="csr", method=method,
                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                      batch_size=max(cfg.call_rows, cfg.gen_batch_size), max_batch_rows=cfg.gen_batch_size,
                      seed=cfg.seed, output_dir=str(out), **kw)


def _trained_eval(cfg: DemoConfig, out: Path, method: str, model_dir: str, base_eval: Path) -> dict[str, Any]:
    from alignkit.evaluate.evaluation import evaluate

    return evaluate(_eval_cfg(replace(cfg, model=model_dir), out, method, reference_model=cfg.model,
                              baseline=str(base_eval)))


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
    sampler = HFSampler(model, tokenizer, max_batch_rows=max(64, cfg.gen_batch_size), progress=True)
    reward = load_reward("csr")
    cfg = replace(cfg, n_test_prompts=min(cfg.n_test_prompts, cfg.n_strategy_prompts or cfg.n_test_prompts))
    prompts = load_prompts(cfg.test_prompts)[: cfg.n_test_prompts]
    rows = []
    from tqdm.auto import tqdm

    chunk = max(1, max(cfg.call_rows, cfg.gen_batch_size) // (cfg.bon_n if strategy == "bon" else 1))
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
    from alignkit.pipelines.recipe import build_round_data, train_step

    recipe = cfg.recipe()
    runs = [base_eval]
    policy = cfg.model
    for r in range(1, cfg.rounds + 1):  # the recipe's rounds: each samples from the policy the last one trained
        data = stages.run(f"data-r{r}", lambda out, p=policy, i=r: build_round_data(recipe, out, p, i))
        trained = stages.run(f"rft-r{r}", lambda out, p=policy, i=r: train_step(
            recipe, out, p, root / f"data-r{i}" / "sft.jsonl", "sft"))
        if not trained.get("steps"):
            log(f"[rft-r{r}] nothing to train on ({trained.get('skipped')}); data: {data.get('rft')}")
            continue
        policy = trained["model"]
        runs.append(root / f"rft-r{r}")
    if policy != cfg.model:
        label = f"RFT, {cfg.rounds} round{'s' if cfg.rounds > 1 else ''} (LoRA)"
        stages.run("rft-eval", lambda out: _trained_eval(cfg, out, label, policy, base_eval))
        runs.append(root / "rft-eval")
    for strategy in ("bon", "qalign"):
        stages.run(strategy, lambda out, s=strategy: _strategy(cfg, out, s, base_eval))
        runs.append(root / strategy)
    report = write_html(runs, root / "report.html", title="alignkit demo: SmolLM2-135M-Instruct on constraint prompts")
    write_markdown(runs, root / "report.md", title="alignkit demo")
    print_summary(summary_table([r for r in runs if (r / "eval.json").exists()]))
    log(f"report: {report}")
    return report
