"""Short DDPO run on the embedded model (issue 19 item 1): does training on corrections move the held-out
corrected answers above the originals?

Data: arithmetic corrections (`What is a + b?`; the original states a wrong sum, the edit fixes only the number),
32 for training, 16 held out. Measured on the held-out pairs before and after training: the log-prob margin
m = S(chosen) − S(rejected) (summed completion log-probs); reported as the paired-bootstrap mean change with a 95 %
CI and the pair accuracy (m > 0) before/after.

  OMP_NUM_THREADS=1 nice -n 19 python benchmarks/feedback_ddpo_embedded.py --objective ddpo --steps 16 --out /tmp/d
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def corrections(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        wrong = a + b + rng.choice([-3, -2, -1, 1, 2, 3])
        text = "{a} + {b} = {s}. I added the two numbers."
        rows.append({"prompt": f"What is {a} + {b}?", "answer": text.format(a=a, b=b, s=wrong),
                     "edited": text.format(a=a, b=b, s=a + b)})
    return rows


def margins(model_spec: str, pairs: list[dict]) -> list[float]:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tok = load_model(model_spec)
    s = HFSampler(model.eval(), tok)
    prompts = [p["prompt"] for p in pairs]
    good = [sum(v) for v in s.score_logprobs(prompts, [p["edited"] for p in pairs])]
    bad = [sum(v) for v in s.score_logprobs(prompts, [p["answer"] for p in pairs])]
    return [g - b for g, b in zip(good, bad, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objective", default="ddpo")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from alignkit.cli import main as cli
    from alignkit.evaluate.stats import paired_bootstrap, proportion_ci

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = corrections(48)
    train, held = rows[:32], rows[32:]
    (out / "edits.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    assert cli(["data", "build", "--from", "corrections", "--corrections", str(out / "edits.jsonl"), "--out",
                str(out / "pairs.jsonl"), "--overwrite", "--no-progress"]) == 0
    t0 = time.time()
    before = margins(args.model, held)
    assert cli(["train", "--model", args.model, "--data", str(out / "pairs.jsonl"), "--objective", args.objective,
                "--output-dir", str(out / "run"), "--overwrite", "--set", f"max_steps={args.steps}",
                "--set", "batch_size=4", "--set", f"lr={args.lr}", "--set", "lora.r=8",
                "--set", "progress=false"]) == 0
    after = margins(str(out / "run" / "final"), held)
    shift = paired_bootstrap(after, before, seed=0)
    result = {"objective": args.objective, "steps": args.steps, "lr": args.lr, "held_out_pairs": len(held),
              "margin_before": sum(before) / len(before), "margin_after": sum(after) / len(after),
              "margin_shift": shift.as_dict(),
              "accuracy_before": proportion_ci([m > 0 for m in before]).as_dict(),
              "accuracy_after": proportion_ci([m > 0 for m in after]).as_dict(),
              "seconds": round(time.time() - t0, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
