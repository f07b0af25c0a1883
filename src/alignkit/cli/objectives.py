"""`alignkit objectives`: list every registered training objective with its data kind, model needs and defaults."""

from __future__ import annotations

import argparse
import json

from alignkit.cli import add_command
from alignkit.errors import ConfigError

KINDS = ("sft", "pairwise", "unpaired", "listwise", "judged")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "objectives", "List the training objectives: data kind, models needed, defaults, paper.",
                    """\
  alignkit objectives                    # the full table
  alignkit objectives --kind pairwise    # only objectives that train on chosen/rejected pairs
  alignkit objectives --name dpo --json  # one objective as JSON (defaults, extras it needs)
""")
    p.add_argument("--kind", choices=KINDS, help="only objectives for this data kind")
    p.add_argument("--name", help="only this objective")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.set_defaults(func=cmd_objectives)


def _fmt_defaults(defaults: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in defaults.items()) or "-"


def cmd_objectives(args: argparse.Namespace) -> int:
    from alignkit.objectives import describe_objectives

    rows = describe_objectives(args.kind)
    if args.name:
        rows = [r for r in rows if r["name"] == args.name]
        if not rows:
            names = ", ".join(r["name"] for r in describe_objectives())
            raise ConfigError(f"unknown objective {args.name!r}; available: {names}")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="alignkit objectives", show_lines=False)
    for col in ("name", "data kind", "reference", "teacher", "token-level", "extras", "defaults", "paper"):
        table.add_column(col, overflow="fold")
    yes = {True: "yes", False: "-"}
    for r in rows:
        extras = ", ".join(r["needs_extras"]) + (" (state)" if r["stateful"] else "")
        table.add_row(r["name"], r["data_kind"], yes[r["needs_reference"]], yes[r["needs_teacher"]],
                      yes[r["token_level"]], extras.strip() or "-", _fmt_defaults(r["defaults"]), r["paper"])
    Console().print(table)
    return 0
