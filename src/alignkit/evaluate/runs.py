"""Read run directories (DESIGN.md "Runs") for comparison and reporting.

A run directory holds (every file optional except that at least one must exist):
* `config.yaml`: the resolved config (a YAML mapping);
* `metrics.jsonl`: one JSON object per line, per training step or evaluation (`step`, `loss`, `tokens`, `seconds`,
  `rewards/accuracy`, `rewards/margin`, `eval/<name>`, ...); blank lines are ignored;
* `samples.jsonl`: one JSON object per generated sample: `prompt`, `completion`, `reward` (number), optional
  `compute` {forward_tokens, generated_tokens, reward_calls}, optional `strategy` (str) and `budget` (number);
* `eval.json`: one JSON object of headline metrics, see `alignkit.evaluate.report` for the keys it reads.
Malformed files raise DataError naming the file and line; nothing is dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.io import read_jsonl
from alignkit.errors import DataError

RUN_FILES = ("config.yaml", "metrics.jsonl", "samples.jsonl", "eval.json")


@dataclass
class Run:
    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """eval.json `method`, else the config's objective/strategy/method name, else the directory name."""
        if isinstance(self.eval.get("method"), str):
            return self.eval["method"]
        for key in ("method", "objective", "strategy"):
            v = self.config.get(key)
            if isinstance(v, str):
                return v
            if isinstance(v, dict) and isinstance(v.get("name"), str):
                return v["name"]
        return self.name


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Load one run directory (see module docstring)."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"run directory {p} does not exist or is not a directory")
    if not any((p / f).exists() for f in RUN_FILES):
        raise DataError(f"{p} is not a run directory: it has none of {', '.join(RUN_FILES)}")
    run = Run(path=p, name=name or p.resolve().name)
    if (p / "config.yaml").exists():
        import yaml

        try:
            cfg = yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise DataError(f"invalid YAML: {e}", source=str(p / "config.yaml")) from e
        if cfg is not None and not isinstance(cfg, dict):
            raise DataError("expected a mapping at the top level", source=str(p / "config.yaml"))
        run.config = cfg or {}
    if (p / "metrics.jsonl").exists():
        run.metrics = read_jsonl(p / "metrics.jsonl")
    if (p / "samples.jsonl").exists():
        run.samples = read_jsonl(p / "samples.jsonl")
    if (p / "eval.json").exists():
        try:
            ev = json.loads((p / "eval.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg})", source=str(p / "eval.json"), line=e.lineno) from e
        if not isinstance(ev, dict):
            raise DataError("expected a JSON object", source=str(p / "eval.json"))
        run.eval = ev
    return run


def load_runs(paths: list[str | Path] | tuple[str | Path, ...]) -> list[Run]:
    """Load several runs; directory names that collide are disambiguated with their parent's name."""
    if not paths:
        raise DataError("no run directories given")
    runs = [load_run(p) for p in paths]
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
    for r in runs:
        if seen[r.name] > 1:
            r.name = f"{r.path.resolve().parent.name}/{r.path.resolve().name}"
    return runs
