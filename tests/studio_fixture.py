"""A small runs directory for the studio tests: two eval runs answering the same six constrained prompts (one
completion holds a script tag), a training run with curves, and the prompt file their config.yaml names."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

PROMPTS = [
    {"id": "p0", "prompt": "Describe a cat in lowercase.", "constraints": [{"id": "change_case:english_lowercase"}]},
    {"id": "p1", "prompt": "Say hello without commas.", "constraints": [{"id": "punctuation:no_comma"}]},
    {"id": "p2", "prompt": "Mention the word river.",
     "constraints": [{"id": "keywords:existence", "kwargs": {"keywords": ["river"]}}]},
    {"id": "p3", "prompt": "Write about rain in lowercase, no commas.",
     "constraints": [{"id": "change_case:english_lowercase"}, {"id": "punctuation:no_comma"}]},
    {"id": "p4", "prompt": "Name a colour without commas.", "constraints": [{"id": "punctuation:no_comma"}]},
    {"id": "p5", "prompt": "Greet me in lowercase.", "constraints": [{"id": "change_case:english_lowercase"}]},
]
SCRIPT = "<script>window.__pwned = 1</script>"
BASE = ["The Cat is soft.", "Hello, world.", "A lake is calm.", "rain falls, softly.", "Red, I think.",
        "Hi there " + SCRIPT]
TUNED = ["the cat is soft and warm.", "Hello world.", "The river runs fast.", "rain falls softly.", "Red, I think.",
         "hello friend " + SCRIPT]


def _eval_run(d: Path, prompts: Path, method: str, completions: list[str], acc: float) -> None:
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"model: tiny-random\nprompts: {prompts}\nmethod: {method}\ntemperature: 1.0\n")
    rows = [{"id": p["id"], "prompt": p["prompt"], "completion": c, "finish_reason": "eos", "reward": float(i % 2),
             "compute": {"forward_tokens": 30 + i, "generated_tokens": 10}, "strategy": "sample"}
            for i, (p, c) in enumerate(zip(PROMPTS, completions, strict=True))]
    (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = {"method": method, "n_prompts": 6,
          "constraint_accuracy": {"value": acc, "low": acc - 0.2, "high": min(1.0, acc + 0.2), "n": 6},
          "reward": {"value": 0.5, "low": 0.1, "high": 0.9, "n": 6, "name": "csr"},
          "ifeval": {"by_type_strict": {"punctuation:no_comma": {"followed": 1, "total": 3, "accuracy": 1 / 3},
                                        "change_case:english_lowercase": {"followed": 2, "total": 3,
                                                                          "accuracy": 2 / 3}}},
          "compute": {"forward_tokens": 200, "generated_tokens": 60}}
    (d / "eval.json").write_text(json.dumps(ev))


def make_runs(root: Path) -> Path:
    """root/{base,tuned} (eval runs), root/train/dpo (a training run) and root/prompts.jsonl; returns root."""
    root.mkdir(parents=True, exist_ok=True)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    _eval_run(root / "base", prompts, "base", BASE, 0.17)
    _eval_run(root / "tuned", prompts, "tuned", TUNED, 0.67)
    t = root / "train" / "dpo"
    (t / "checkpoints").mkdir(parents=True)
    (t / "config.yaml").write_text("objective: dpo\nmodel: tiny-random\nlr: 0.001\n")
    (t / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.7 - 0.05 * s, "tokens": 100,
                                                         "seconds": 0.5, "rewards/accuracy": 0.5 + 0.05 * s}) + "\n"
                                             for s in range(1, 6)))
    return root


class Server:
    """`alignkit studio ROOT --port 0` in a child process; `url` is the one it prints."""

    def __init__(self, root: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                            os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "alignkit", "studio", str(root), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:(\d+)/)", line)
        assert m, f"no URL printed: {line!r}"
        self.url, self.port = m.group(1), int(m.group(2))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)  # no shutdown hook runs: only what was committed survives
        self.proc.wait(timeout=30)
