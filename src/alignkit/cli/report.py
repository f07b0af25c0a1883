"""`alignkit report RUN_DIR... -o report.html [--markdown report.md]`: compare runs in one self-contained page."""

from __future__ import annotations

import argparse
from pathlib import Path

from alignkit.cli import add_command

EXAMPLES = """  alignkit report runs/dpo                      # writes runs/dpo/report.html
  alignkit report runs/dpo runs/simpo runs/bon -o compare.html
  alignkit report runs/dpo runs/kto --markdown compare.md   # also Markdown, PNGs in compare_files/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "report", "Summarise and compare run directories: a table on the terminal and an HTML "
                                   "(and optionally Markdown) report with plots.", EXAMPLES)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories (config.yaml, metrics.jsonl, samples.jsonl, eval.json)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="HTML file to write (default: RUN_DIR/report.html for one run, ./report.html for several)")
    p.add_argument("--markdown", type=Path, default=None, help="also write a Markdown report here")
    p.add_argument("--title", default="alignkit report", help="report title")
    p.add_argument("--quiet", action="store_true", help="do not print the summary table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.evaluate.report import print_summary, summary_table, write_html, write_markdown
    from alignkit.evaluate.runs import load_runs

    runs = load_runs(args.run_dirs)
    out = args.output or (Path(args.run_dirs[0]) / "report.html" if len(runs) == 1 else Path("report.html"))
    if not args.quiet:
        print_summary(summary_table(runs))
    print(f"wrote {write_html(runs, out, args.title)}")
    if args.markdown is not None:
        print(f"wrote {write_markdown(runs, args.markdown, args.title)}")
    return 0
