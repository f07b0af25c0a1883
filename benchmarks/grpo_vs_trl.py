"""GRPO: alignkit vs TRL's GRPOTrainer on the same model, reward, prompts and group size.

Each side runs in a fresh subprocess (so peak RSS is its own) and reports seconds per step (the first step, which
pays one-off warm-up costs, is left out), peak RSS, and the mean completion length (both sample until EOS or
the length cap, so lengths are reported to show the work per step was comparable). The parent prints ratios
alignkit / TRL (< 1 means alignkit is faster / smaller).

Shared settings: 4 prompts per step × G = 4 completions, up to 32 new tokens, temperature 1.0, β = 0.04 (so both
keep a reference model), ε = 0.2, bnpo aggregation, group std scaling, one pass per batch, lr 1e-5, full
fine-tuning, no gradient checkpointing, fp32 on CPU. Reward: fraction of letters that are vowels.

    .venv/bin/python benchmarks/grpo_vs_trl.py                     # embedded SmolLM2-135M, 5 steps
    .venv/bin/python benchmarks/grpo_vs_trl.py --model tiny-random --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

PROMPTS = ["Write a short poem about the sea.", "Explain why the sky is blue.", "Give me three tips for studying.",
           "Describe your favourite food.", "What makes a good friend?", "Summarise the water cycle.",
           "Tell me a fun fact about space.", "How do plants grow?"]


def vowel_fraction(completions: list[str]) -> list[float]:
    out = []
    for c in completions:
        letters = [ch for ch in c.lower() if ch.isalpha()]
        out.append(sum(ch in "aeiou" for ch in letters) / max(1, len(letters)))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_alignkit(a: argparse.Namespace) -> dict:
    from alignkit.data.records import PromptExample
    from alignkit.rewards.base import FunctionReward
    from alignkit.rl.trainer import run_online
    from alignkit.train.config import TrainConfig

    reward = FunctionReward(lambda prompts, completions, **_: vowel_fraction(completions), name="vowels")
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(model=a.model, objective="grpo", output_dir=out, batch_size=a.prompts, grad_accum=1,
                          lr=1e-5, max_steps=a.steps, scheduler="constant", beta=0.04, reference="separate",
                          max_grad_norm=1.0, progress=False, seed=0,
                          objective_args=dict(num_generations=a.group, max_new_tokens=a.max_new_tokens,
                                              temperature=1.0, loss_type="bnpo", scale_rewards="group",
                                              log_samples_every=0))
        res = run_online(cfg, reward=reward, prompts=[PromptExample(p) for p in PROMPTS], log=lambda _m: None)
    steps = [h["step_s"] for h in res.history]
    return {"seconds_per_step": sum(steps[1:]) / max(1, len(steps) - 1), "peak_rss_mb": peak_rss_mb(),
            "completion_length": sum(h["completion_length"] for h in res.history) / len(res.history),
            "reward_first": res.history[0]["reward"], "reward_last": res.history[-1]["reward"]}


def run_trl(a: argparse.Namespace) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from alignkit.models import load_tokenizer

    tok = load_tokenizer(a.model)
    times: list[float] = []
    lengths: list[float] = []
    rewards: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003
            times.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001, ANN003
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))
            if logs and "reward" in logs:
                rewards.append(float(logs["reward"]))

    def reward_fn(prompts, completions, **_):  # noqa: ANN001, ANN003
        return vowel_fraction([c if isinstance(c, str) else c[-1]["content"] for c in completions])

    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=a.prompts * a.group, num_generations=a.group,
                          max_completion_length=a.max_new_tokens, temperature=1.0, beta=0.04, epsilon=0.2,
                          loss_type="bnpo", scale_rewards="group", learning_rate=1e-5, lr_scheduler_type="constant",
                          max_steps=a.steps, logging_steps=1, report_to="none", gradient_checkpointing=False,
                          use_cpu=True, bf16=False, save_strategy="no", seed=0, max_grad_norm=1.0,
                          disable_tqdm=True, model_init_kwargs={"dtype": "float32"})
        # a path, so TRL builds its reference copy itself, as users run it
        trainer = GRPOTrainer(model=a.model, reward_funcs=[reward_fn], args=args, train_dataset=data,
                              processing_class=tok, callbacks=[Clock()])
        trainer.train()
    return {"seconds_per_step": sum(times[1:]) / max(1, len(times) - 1), "peak_rss_mb": peak_rss_mb(),
            "completion_length": sum(lengths) / max(1, len(lengths)),
            "reward_first": rewards[0] if rewards else float("nan"),
            "reward_last": rewards[-1] if rewards else float("nan")}


def model_dir(spec: str, tmp: str) -> str:
    """Both sides load the same weights from one local HF directory (TRL needs a path for its reference copy)."""
    from alignkit.models import EMBEDDED, TINY, load_model, prepare_embedded

    if spec == EMBEDDED:
        return str(prepare_embedded())
    if spec.startswith(TINY):
        model, tok = load_model(spec, seed=0)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        return tmp
    return spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="completions per prompt (G)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--side", choices=["alignkit", "trl"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.side:
        import torch

        torch.set_num_threads(a.threads)
        result = run_alignkit(a) if a.side == "alignkit" else run_trl(a)
        print("RESULT " + json.dumps(result))
        return
    results = {}
    tmp = tempfile.TemporaryDirectory()
    label, a.model = a.model, model_dir(a.model, tmp.name)
    for side in ("alignkit", "trl"):
        cmd = [sys.executable, __file__, "--side", side, "--model", a.model, "--steps", str(a.steps), "--prompts",
               str(a.prompts), "--group", str(a.group), "--max-new-tokens", str(a.max_new_tokens),
               "--threads", str(a.threads)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"{side} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[side] = json.loads(lines[-1][7:])
    ak, trl = results["alignkit"], results["trl"]
    tmp.cleanup()
    print(f"model {label}, {a.prompts} prompts x G={a.group}, <= {a.max_new_tokens} new tokens, {a.steps} steps, "
          f"{a.threads} threads")
    print(f"{'':18}{'alignkit':>12}{'TRL':>12}{'ratio':>10}")
    for key, fmt in (("seconds_per_step", "{:.2f}"), ("peak_rss_mb", "{:.0f}"), ("completion_length", "{:.1f}")):
        print(f"{key:18}{fmt.format(ak[key]):>12}{fmt.format(trl[key]):>12}{ak[key] / trl[key]:>10.2f}")
    print(f"{'reward first/last':18}{ak['reward_first']:>6.3f}/{ak['reward_last']:.3f}"
          f"{trl['reward_first']:>6.3f}/{trl['reward_last']:.3f}")


if __name__ == "__main__":
    main()
