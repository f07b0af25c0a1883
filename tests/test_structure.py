"""The package's shape (issue #22): no import circle among `alignkit` modules, and no source file over 500 lines.

Import graph: every `.py` under `src/alignkit` is a node (`pkg/__init__.py` is the node `pkg`). An edge A → B is
any import of B written in A: module-level statements (also inside top-level `if`/`try` blocks and class bodies)
AND imports inside functions, relative imports resolved. Function-level imports count because a deferred import
still ties the two modules together: the circle issue #22 names (`train/engine.py` importing `train/steps.py`
inside `train()`, `steps.py` importing the engine back) was one. `from pkg import name` points at the submodule
`pkg.name` when one exists, else at `pkg`. Not counted, by rule rather than by exemption:
* `if TYPE_CHECKING:` blocks, which never run;
* imports of the module's own ancestor packages (`alignkit.objectives.base` calling `import alignkit.objectives`
  to fill the objective registry): Python imports every ancestor before the submodule, so such an edge adds no
  order and cannot form a circle that imports could trip on;
* the implicit import of a parent package when a submodule is imported (a package `__init__` re-exporting its
  submodules would otherwise be in a circle with each of them).
A separate test checks the stricter import-time graph (module level only) too.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "alignkit"
MAX_LINES = 500


def module_files(root: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is_package)."""
    out: dict[str, tuple[Path, bool]] = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(body: list[ast.stmt], deferred: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements in `body`: those that run at import time, plus (`deferred`) those inside functions."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if deferred:
                found += _imports(node.body, deferred)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _imports(node.body, deferred)
            found += _imports(node.orelse, deferred)
        elif isinstance(node, ast.Try | ast.TryStar):
            found += _imports(node.body + node.orelse + node.finalbody, deferred)
            for handler in node.handlers:
                found += _imports(handler.body, deferred)
        elif isinstance(node, ast.ClassDef | ast.With | ast.For | ast.While):
            found += _imports(node.body, deferred)
    return found


def import_graph(root: Path = PACKAGE, *, deferred: bool = True) -> dict[str, set[str]]:
    """Module → the modules of the package at `root` it imports (`deferred`: function-level imports too)."""
    modules = module_files(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        package = name if is_pkg else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body, deferred):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
                continue
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in modules else source)
        # An ancestor package is always imported before its submodules, so an edge to one adds no ordering.
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in modules and t != name and t.split(".")[0] == top
                       and t not in ancestors}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as e:
        return list(e.args[1])
    return None


def test_the_cycle_finder_sees_a_circle_and_a_clean_graph(tmp_path: Path) -> None:
    # A tiny package with a → b → c → a (c's import of a is deferred into a function).
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from toy.sub.c import C\n")
    (pkg / "a.py").write_text("from toy import b\n")
    (pkg / "b.py").write_text("try:\n    from .sub import c\nexcept ImportError:\n    c = None\n")
    (pkg / "sub" / "c.py").write_text("import toy.sub\nC = 1\ndef f():\n    import toy.a\n")
    graph = import_graph(pkg)
    assert graph["toy.a"] == {"toy.b"} and graph["toy.b"] == {"toy.sub.c"} and graph["toy.sub.c"] == {"toy.a"}
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"toy.a", "toy.b", "toy.sub.c"}
    assert find_cycle(import_graph(pkg, deferred=False)) is None  # only the deferred import closes it
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import toy.a\n")
    assert find_cycle(import_graph(pkg)) is None


@pytest.mark.parametrize("deferred", [True, False], ids=["with-function-level-imports", "import-time-only"])
def test_no_import_circle_among_alignkit_modules(deferred: bool) -> None:
    graph = import_graph(deferred=deferred)
    assert len(graph) > 100  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


def test_train_step_classes_sit_below_the_engine() -> None:
    # Issue #22 item 1: the engine imports the steps; nothing in train/ imports the engine back (the package's
    # lazy `alignkit.train.train` facade sits above the engine and is the one exception by design).
    graph = import_graph()
    assert "alignkit.train.step" in graph["alignkit.train.steps"]
    back = sorted(m for m, deps in graph.items()
                  if "alignkit.train.engine" in deps and m.startswith("alignkit.train."))
    assert back == [], f"train/ modules importing the engine: {back}"


def test_shared_runtime_helpers_import_nothing_from_alignkit() -> None:
    # Issue #22 item 5: trainers of every layer import alignkit.runtime, so it must stay at the bottom.
    assert import_graph()["alignkit.runtime"] == set()


def test_no_source_file_over_500_lines() -> None:
    too_long = {str(p.relative_to(SRC)): n for p in sorted(PACKAGE.rglob("*.py"))
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not too_long, f"split by concern (no exemptions): {too_long}"


def test_moved_names_keep_their_old_import_paths() -> None:
    # Issue #22: "the public imports documented in README and docs keep working".
    import alignkit.rewards.train as old_rm
    import alignkit.rewards.training as rm
    import alignkit.runtime as runtime
    from alignkit.evaluate import report
    from alignkit.train import engine, loop, step

    assert engine.ObjectiveStep is step.ObjectiveStep
    assert (engine.seed_everything, engine.make_accelerator, engine.split_eval) == (
        runtime.seed_everything, runtime.make_accelerator, runtime.split_eval)
    assert loop.make_scheduler is runtime.make_scheduler
    assert set(old_rm.__all__) == set(rm.__all__) and old_rm.train_reward_model is rm.train_reward_model
    assert {"PALReward", "RewardTrainConfig", "train_reward_model", "BTStep", "collate_rm"} <= set(rm.__all__)
    for name in ("print_summary", "render_html", "summary_table", "write_html", "write_markdown", "SECTION_TITLES"):
        assert hasattr(report, name)
