"""Named, resumable stages: each stage writes into its own directory and a `.done` marker with its summary, so a
rerun of an interrupted pipeline skips what finished and resumes the stage that did not (the stages themselves
resume: builds append, training continues from its last checkpoint, evaluations keep their finished rows)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Stages:
    """Run named stages once; a `.done` marker with the stage's summary makes a rerun skip it."""

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.root, self.log = root, log
        self.timings: dict[str, float] = {}

    def done(self, name: str) -> bool:
        return (self.root / name / ".done").exists()

    def run(self, name: str, fn: Callable[[Path], Any]) -> Any:
        out = self.root / name
        marker = out / ".done"
        if marker.exists():
            self.log(f"[{name}] already done, skipping")
            return json.loads(marker.read_text())
        out.mkdir(parents=True, exist_ok=True)
        self.log(f"[{name}] starting")
        t0 = time.perf_counter()
        result = fn(out)
        self.timings[name] = time.perf_counter() - t0
        tmp = marker.with_name(".done.tmp")
        tmp.write_text(json.dumps(result if result is not None else {}, default=str))
        tmp.replace(marker)  # a marker is whole or absent: a kill while writing it reruns the (resumable) stage
        self.log(f"[{name}] done in {self.timings[name]:.0f}s")
        return result
