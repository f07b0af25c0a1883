"""Evaluation: metrics with bootstrap CIs (`metrics`, `stats`), run directories (`runs`) and reports (`report`).

    from alignkit.evaluate import ifeval_accuracy, win_rate, kl_estimate, write_html
"""

from alignkit.evaluate.metrics import *  # noqa: F403 - the metrics namespace is the public API
from alignkit.evaluate.metrics import __all__ as _metrics_all
from alignkit.evaluate.report import print_summary, render_html, summary_table, write_html, write_markdown
from alignkit.evaluate.runs import Run, load_run, load_runs

__all__ = [*_metrics_all, "Run", "load_run", "load_runs", "print_summary", "render_html", "summary_table",
           "write_html", "write_markdown"]
