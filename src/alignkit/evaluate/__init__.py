"""Evaluation: metrics with bootstrap CIs (`metrics`, `stats`), run directories (`runs`) and reports (`report`).

    from alignkit.evaluate import ifeval_accuracy, win_rate, kl_estimate, write_html
"""

import sys as _sys
import types as _types
from typing import Any as _Any

from alignkit.evaluate.metrics import *  # noqa: F403 - the metrics namespace is the public API
from alignkit.evaluate.metrics import __all__ as _metrics_all
from alignkit.evaluate.report import print_summary, render_html, summary_table, write_html, write_markdown
from alignkit.evaluate.runs import Run, load_run, load_runs

__all__ = [*_metrics_all, "Run", "load_run", "load_runs", "print_summary", "render_html", "summary_table",
           "write_html", "write_markdown"]


class _CallablePackage(_types.ModuleType):
    """Calling the package runs the top-level API, `alignkit.evaluate(...)` (`alignkit.api.evaluate`; issue #16.9):
    `alignkit.evaluate` is this package once any `alignkit.evaluate.*` module is imported, so the callable lives here."""

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        from alignkit.api import evaluate as _api

        return _api(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
