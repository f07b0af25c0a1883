"""Run directories under RUNS_DIR, found and opened without ever leaving it.

A run is any directory under the root that holds one of `alignkit.evaluate.runs.RUN_FILES` (the root itself
too, e.g. `runs/demo` with its config.yaml). Its *kind* is read from what it holds: `eval` (eval.json), `train`
(checkpoints/ or final/ with metrics.jsonl), `rl` (an online-RL config), `generate` (samples.jsonl alone), `demo`
(a demo/recipe root that holds other runs). Names are paths relative to the root, with `/`.

`resolve_run(root, name)` is the one way a request names a run: the resolved path must stay inside the resolved
root (no `..`, no absolute paths, no symlink out), else a `DataError`, which the app answers with 404.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alignkit.errors import DataError
from alignkit.evaluate.runs import RUN_FILES, Run, load_run

# Folders that hold no runs of their own and may be large: never walked.
SKIP_DIRS = frozenset({"checkpoints", "final", "merged", "cache", ".cache", ".studio", "__pycache__", ".git",
                       "node_modules", "report_files"})
MAX_DEPTH = 4


@dataclass(frozen=True)
class RunInfo:
    name: str  # relative to the root, "/"-separated; "." for the root itself
    path: Path
    kind: str
    files: tuple[str, ...]


def _is_run(p: Path) -> bool:
    return any((p / f).is_file() for f in RUN_FILES)


def run_kind(p: Path, has_children: bool = False) -> str:
    if has_children and (p / "config.yaml").is_file() and not (p / "eval.json").is_file():
        return "demo"
    if (p / "eval.json").is_file():
        return "eval"
    if (p / "checkpoints").is_dir() or (p / "final").is_dir():
        cfg = (p / "config.yaml").read_text(encoding="utf-8", errors="replace") if (p / "config.yaml").is_file() else ""
        return "rl" if "rollout" in cfg or "group_size" in cfg else "train"
    if (p / "metrics.jsonl").is_file():
        return "train"
    if (p / "samples.jsonl").is_file():
        return "generate"
    return "other"


def find_runs(root: str | Path) -> list[RunInfo]:
    """Every run directory under `root` (depth ≤ 4), sorted by name; symlinked folders are not followed."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"runs directory {base} does not exist or is not a directory")
    base = base.resolve()
    found: list[Path] = []
    for dirpath, dirnames, _files in os.walk(base, followlinks=False):
        d = Path(dirpath)
        depth = len(d.relative_to(base).parts)
        dirnames[:] = sorted(n for n in dirnames if n not in SKIP_DIRS and not n.startswith(".")) \
            if depth < MAX_DEPTH else []
        if _is_run(d):
            found.append(d)
    out = []
    for d in found:
        children = any(o != d and d in o.parents for o in found)
        name = d.relative_to(base).as_posix() or "."
        out.append(RunInfo(name, d, run_kind(d, children), tuple(f for f in RUN_FILES if (d / f).is_file())))
    return sorted(out, key=lambda r: (r.name != ".", r.name))


def resolve_run(root: str | Path, name: str) -> Path:
    """The directory of run `name` under `root`; DataError if it is outside the root or not a run."""
    base = Path(root).resolve()
    if not name or "\x00" in name or name.startswith(("/", "\\")) or ".." in Path(name).parts:
        raise DataError(f"not a run under the studio's root: {name!r}")
    p = (base / name).resolve()
    if p != base and base not in p.parents:
        raise DataError(f"not a run under the studio's root: {name!r}")
    if not p.is_dir() or not _is_run(p):
        raise DataError(f"no run named {name!r}")
    return p


def open_run(root: str | Path, name: str) -> Run:
    """Load run `name` (see `resolve_run`), named as the studio shows it."""
    return load_run(resolve_run(root, name), name=name)
