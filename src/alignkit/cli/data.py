"""`alignkit data validate|convert|stats|relabel` (and `build`, when `alignkit.cli.build` is installed)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from alignkit.cli import add_command
from alignkit.data.convert import CONVERSIONS, PAIR_MODES, convert
from alignkit.data.io import FORMATS, read_records, write_records
from alignkit.data.records import DATA_KINDS
from alignkit.errors import ConfigError, DataError

KINDS = sorted(DATA_KINDS)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=KINDS, help="data kind (default: detected from the first row's columns)")
    p.add_argument("--format", choices=FORMATS, help="file format (default: from the file name; a directory is "
                                                     "a datasets directory)")
    p.add_argument("--split", help="split of a datasets directory with several splits")
    p.add_argument("--allow-empty", action="store_true",
                   help="accept an input with no records (empty file, header-only CSV, zero-row Parquet); "
                        "by default that is an error")


def register(sub: argparse._SubParsersAction) -> None:
    data = add_command(sub, "data", "Validate, convert and inspect preference data.", """\
  alignkit data validate pairs.jsonl --kind pairwise
  alignkit data convert lists.jsonl pairs.jsonl --to pairwise --mode best-vs-worst
  alignkit data stats pairs.jsonl --model smollm2-135m-instruct --max-length 512
  alignkit data relabel scored_pairs.jsonl augmented.jsonl
""")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: data.print_help() or 0)

    p = add_command(actions, "validate", "Check every record; print FILE:LINE: field 'x': reason for each bad one.",
                    """\
  alignkit data validate pairs.jsonl                         # kind detected from the columns
  alignkit data validate ranked.parquet --kind listwise
  alignkit data validate pairs.jsonl --on-bad-record skip     # report how many would be skipped, and why
  alignkit data validate ./my_dataset --split train          # a datasets directory (save_to_disk or data files)
exit status: 0 when every record is valid (or with --on-bad-record skip), 1 when any is bad, when the file
cannot be read, or when it holds no records (unless --allow-empty).
""")
    p.add_argument("file", metavar="FILE", help="JSONL, JSON, Parquet, CSV/TSV file or datasets directory")
    _add_input_options(p)
    p.add_argument("--on-bad-record", choices=("error", "skip"), default="error",
                   help="error: list every bad record and exit 1 (default); skip: report skip counts and exit 0")
    p.set_defaults(func=cmd_validate)

    conversions = ", ".join(f"{a}->{b}" for a, b in CONVERSIONS)
    p = add_command(actions, "convert", f"Convert records between kinds ({conversions}); writes JSONL.", """\
  alignkit data convert lists.jsonl pairs.jsonl --to pairwise --mode best-vs-worst
  alignkit data convert lists.jsonl pairs.jsonl --to pairwise --mode all-pairs --with-margin
  alignkit data convert pairs.jsonl kto.jsonl --to unpaired
  alignkit data convert pairs.jsonl lists.jsonl --to listwise --score win_rate
  alignkit data convert scored.jsonl lists.jsonl --to listwise --attribute helpfulness
  alignkit data convert scored.jsonl lists.jsonl --to listwise --weights helpfulness=1,verbosity=-0.5
""")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT", help="output .jsonl file")
    _add_input_options(p)
    p.add_argument("--to", required=True, choices=KINDS, help="target data kind")
    p.add_argument("--mode", choices=PAIR_MODES, help="how ranked lists become pairs (default all-pairs)")
    p.add_argument("--with-margin", action="store_true", help="set each pair's margin to its score gap")
    p.add_argument("--attribute", help="scored->listwise: the attribute to rank by")
    p.add_argument("--weights", help="scored->listwise: rank by a weighted sum, e.g. helpful=1,verbose=-0.5")
    p.add_argument("--score", choices=("wins", "win_rate"), help="pairwise->listwise scores (default wins)")
    p.add_argument("--on-bad-record", choices=("error", "skip"), default="error",
                   help="stop at the first bad input record (default) or skip and count bad records")
    p.add_argument("--append", action="store_true", help="append to OUT instead of replacing it")
    p.set_defaults(func=cmd_convert)

    p = add_command(actions, "stats", "Counts by kind, token lengths and truncation counts.", """\
  alignkit data stats pairs.jsonl
  alignkit data stats pairs.jsonl --model smollm2-135m-instruct --max-length 256 --max-prompt-length 128
  alignkit data stats lists.parquet --no-tokens --json
""")
    p.add_argument("file", metavar="FILE")
    _add_input_options(p)
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="model whose tokenizer counts tokens (default: the embedded smollm2-135m-instruct)")
    p.add_argument("--max-length", type=int, default=1024, help="sequence limit for truncation counts (1024)")
    p.add_argument("--max-prompt-length", type=int, help="prompt limit for truncation counts (none)")
    p.add_argument("--template", choices=("auto", "always", "never", "chat-only"), default="auto",
                   help="chat template use for plain-string prompts (see alignkit.data.tokenize)")
    p.add_argument("--no-tokens", action="store_true", help="skip tokenisation (counts only)")
    p.add_argument("--on-bad-record", choices=("error", "skip"), default="error")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_stats)

    _add_build(actions)
    from alignkit.cli.data_relabel import add_relabel_parser

    add_relabel_parser(actions)


def _add_build(actions: argparse._SubParsersAction) -> None:
    """`alignkit data build` lives in `alignkit.cli.build` (another module); add it when present."""
    try:
        module = importlib.import_module("alignkit.cli.build")
    except ModuleNotFoundError as e:
        if e.name != "alignkit.cli.build":
            raise
        return
    add_build_parser = getattr(module, "add_build_parser", None)
    if add_build_parser is not None:
        add_build_parser(actions)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        result = read_records(args.file, args.kind, on_bad_record="skip", format=args.format, split=args.split,
                              allow_empty=args.allow_empty)
    except DataError as e:  # the file as a whole is unreadable, or empty without --allow-empty
        print(e)
        return 1
    if args.on_bad_record == "skip":
        print(result.summary())
        return 0
    for where, reason in result.skipped:
        print(f"{where}: {reason}")
    total = len(result.records) + len(result.skipped)
    if result.skipped:
        print(f"{len(result.skipped)} of {total} records are bad", file=sys.stderr)
        return 1
    print(f"{result.source}: {total} {result.kind} records, all valid")
    return 0


def _weights(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--weights takes name=number pairs separated by commas, got {part!r}") from None
    return weights


def cmd_convert(args: argparse.Namespace) -> int:
    result = read_records(args.input, args.kind, on_bad_record=args.on_bad_record, format=args.format,
                          split=args.split, allow_empty=args.allow_empty)
    print(result.summary(), file=sys.stderr)
    records, stats = convert(result.records, result.kind, args.to, mode=args.mode, with_margin=args.with_margin,
                             attribute=args.attribute, weights=_weights(args.weights), score=args.score)
    n = write_records(args.output, records, append=args.append)
    print(stats.summary(), file=sys.stderr)
    print(f"wrote {n} {args.to} records to {args.output}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from alignkit.data.stats import describe

    result = read_records(args.file, args.kind, on_bad_record=args.on_bad_record, format=args.format,
                          split=args.split, allow_empty=args.allow_empty)
    tokenizer = None
    if not args.no_tokens:
        from alignkit.models import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    stats = describe(result.records, tokenizer, max_length=args.max_length,
                     max_prompt_length=args.max_prompt_length, template=args.template, progress=True)
    if args.json:
        print(json.dumps({**stats.to_dict(), "skipped": len(result.skipped)}, indent=2))
    else:
        print(result.summary())
        print("\n".join(stats.lines()))
    return 0
