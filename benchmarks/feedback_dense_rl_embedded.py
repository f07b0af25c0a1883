"""Short seq2seq-RM → GRPO run on the embedded model (issue 19 item 3): does RL on the RM's token rewards, dense
(per-token advantages) or sequence (their mean, broadcast), make held-out answers correct more often?

Data: the arithmetic corrections of `feedback_ddpo_embedded.py` (`What is a + b?`; the original states a wrong sum,
the edit fixes the number). 32 pairs train the seq2seq RM (correction + identity mappings, LoRA SFT), 32 other
prompts are the RL prompts, 16 more are held out. Measured on the held-out prompts, greedy, before and after GRPO:
accuracy (the correct sum appears in the answer) and the RM's mean token reward, as paired-bootstrap changes with
95 % CIs. `--rm DIR` reuses a trained RM (so `dense` and `sequence` runs share one).

  OMP_NUM_THREADS=1 nice -n 19 python benchmarks/feedback_dense_rl_embedded.py --token-rewards dense --out /tmp/r
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import time
from pathlib import Path


def corrections(n: int) -> list[dict]:
    path = Path(__file__).with_name("feedback_ddpo_embedded.py")
    spec = importlib.util.spec_from_file_location("feedback_ddpo_embedded", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.corrections(n)


def correct(row: dict, text: str) -> bool:
    a, b = (int(x) for x in re.findall(r"\d+", row["prompt"]))
    return str(a + b) in re.findall(r"-?\d+", text)


def greedy(model_spec: str, rows: list[dict], max_new_tokens: int) -> list[str]:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tok = load_model(model_spec)
    out = HFSampler(model.eval(), tok).sample([r["prompt"] for r in rows], n=1, max_new_tokens=max_new_tokens,
                                              temperature=0.0, seed=0)
    return [g[0].text for g in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--token-rewards", choices=["dense", "sequence"], default="dense")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rm", help="a trained seq2seq RM directory (else one is trained into OUT/rm)")
    ap.add_argument("--rm-steps", type=int, default=16)
    ap.add_argument("--rl-steps", type=int, default=12)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from alignkit.cli import main as cli
    from alignkit.evaluate.stats import paired_bootstrap, proportion_ci
    from alignkit.rewards.registry import load_reward

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = corrections(80)
    pairs, rl, held = rows[:32], rows[32:64], rows[64:]
    (out / "pairs.jsonl").write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r["edited"],
                                                         "rejected": r["answer"]}) + "\n" for r in pairs))
    (out / "rl.jsonl").write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in rl))
    t0 = time.time()
    lora = ["--set", "lora.r=8", "--set", "progress=false", "--overwrite"]
    rm = args.rm
    if rm is None:
        assert cli(["data", "build", "--from", "seq2seq-rm", "--pairwise", str(out / "pairs.jsonl"), "--out",
                    str(out / "s2s.jsonl"), "--overwrite", "--no-progress"]) == 0
        assert cli(["train", "--model", args.model, "--data", str(out / "s2s.jsonl"), "--objective", "sft",
                    "--output-dir", str(out / "rm"), "--set", f"max_steps={args.rm_steps}", "--set", "batch_size=4",
                    "--set", "lr=1e-4", "--set", "objective_args.per_sequence=true", *lora]) == 0
        rm = str(out / "rm" / "final")
    t_rm = time.time()
    before = greedy(args.model, held, args.max_new_tokens)
    run = out / f"grpo-{args.token_rewards}"
    assert cli(["train", "--model", args.model, "--data", str(out / "rl.jsonl"), "--objective", "grpo",
                "--output-dir", str(run), "--set", f"max_steps={args.rl_steps}", "--set", "batch_size=4",
                "--set", f"lr={args.lr}", "--set", f"objective_args.reward=seq2seq:{rm}",
                "--set", f"objective_args.token_rewards={args.token_rewards}",
                "--set", "objective_args.num_generations=4",
                "--set", f"objective_args.max_new_tokens={args.max_new_tokens}", *lora]) == 0
    after = greedy(str(run / "final"), held, args.max_new_tokens)
    reward = load_reward(f"seq2seq:{rm}")
    prompts = [r["prompt"] for r in held]
    r_before, r_after = reward(prompts, before).scores, reward(prompts, after).scores
    acc_b, acc_a = [float(correct(r, t)) for r, t in zip(held, before, strict=True)], \
        [float(correct(r, t)) for r, t in zip(held, after, strict=True)]
    result = {"token_rewards": args.token_rewards, "model": args.model, "rm": rm, "rm_steps": args.rm_steps,
              "rl_steps": args.rl_steps, "lr": args.lr, "held_out": len(held),
              "accuracy_before": proportion_ci(acc_b).as_dict(), "accuracy_after": proportion_ci(acc_a).as_dict(),
              "accuracy_change": paired_bootstrap(acc_a, acc_b, seed=0).as_dict(),
              "rm_reward_before": sum(r_before) / len(r_before), "rm_reward_after": sum(r_after) / len(r_after),
              "rm_reward_change": paired_bootstrap(r_after, r_before, seed=0).as_dict(),
              "rm_seconds": round(t_rm - t0, 1), "seconds": round(time.time() - t0, 1),
              "samples": [{"prompt": p, "before": b, "after": a} for p, b, a in zip(prompts, before, after,
                                                                                    strict=True)][:4]}
    (out / f"result-{args.token_rewards}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
