"""`alignkit <verb>`: a thin layer that parses arguments, builds configs and calls the Python API.

Each module in this package that defines `register(subparsers)` adds its verbs; modules are discovered, so a new
verb is a new module. Errors of the library's own types print one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from alignkit import __version__
from alignkit.errors import AlignkitError

EPILOG = """examples:
  alignkit models prepare smollm2-135m-instruct
  alignkit data validate pairs.jsonl --kind pairwise
  alignkit data convert lists.jsonl pairs.jsonl --to pairwise --mode best-vs-worst
  alignkit train --model tiny-random --data pairs.jsonl --objective dpo --output-dir runs/x
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignkit", description="Align language models with human preferences.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"alignkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = args.func(args)
    except AlignkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {getattr(args, 'interrupt_hint', 'rerun the same command to resume')}", file=sys.stderr)
        return 130
    return int(rc or 0)


def add_set_flag(p: argparse.ArgumentParser, help: str) -> None:
    """The repeatable `--set KEY=VALUE` override flag (into `args.overrides`), as every configurable verb has it."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_command(sub: argparse._SubParsersAction, name: str, help: str, examples: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """Add a verb with its help text (`description`, when given, is the longer text of its own --help) and an
    examples epilog."""
    return sub.add_parser(name, help=help, description=description or help, epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


if __name__ == "__main__":
    sys.exit(main())
