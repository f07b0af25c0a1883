"""`alignkit data relabel IN OUT`: reward-augmented relabelling of scored pairs (spec §6.1).

Registered as an action of `alignkit data` by `alignkit.cli.data`; the work is `alignkit.data.relabel`.
"""

from __future__ import annotations

import argparse
import sys

from alignkit.cli import add_command

EXAMPLES = """\
  alignkit data relabel scored_pairs.jsonl augmented.jsonl       # scores in score_chosen / score_rejected
  alignkit data relabel uf.jsonl aug.jsonl --chosen-key chosen_rating --rejected-key rejected_rating
  alignkit data relabel pairs.jsonl aug.jsonl --no-system-role    # goal text goes into the first user turn
  alignkit train --data augmented.jsonl --objective dpo --set beta=0.01 --set objective_args.label_smoothing=0.3
Each scored pair becomes two goal-conditioned pairs (the second flipped); pairs with equal or missing scores are
dropped and counted. Every output pair has margin = |r_w − r_l| (usable by dpo's reward_scaling_w).
"""


def add_relabel_parser(actions: argparse._SubParsersAction) -> None:
    p = add_command(actions, "relabel", "Reward-augmented relabelling: each scored pair → two goal-conditioned "
                                        "pairs (Zhang et al. 2024).", EXAMPLES)
    p.add_argument("input", metavar="IN", help="pairwise file whose rows carry the two judge scores")
    p.add_argument("output", metavar="OUT", help="output .jsonl file")
    p.add_argument("--format", help="input file format (default: from the file name)")
    p.add_argument("--split", help="split of a datasets directory with several splits")
    p.add_argument("--chosen-key", default="score_chosen", help="column with the chosen response's score")
    p.add_argument("--rejected-key", default="score_rejected", help="column with the rejected response's score")
    p.add_argument("--no-system-role", action="store_true",
                   help="prepend the goal to the first user turn instead of adding a system message")
    p.add_argument("--low", type=int, default=1, help="lowest score of the judge's scale (1)")
    p.add_argument("--high", type=int, default=10, help="highest score of the judge's scale (10)")
    p.add_argument("--on-bad-record", choices=("error", "skip"), default="error",
                   help="stop at the first bad input record (default) or skip and count bad records")
    p.set_defaults(func=cmd_relabel)


def cmd_relabel(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_records, write_records
    from alignkit.data.relabel import reward_augment

    result = read_records(args.input, "pairwise", on_bad_record=args.on_bad_record, format=args.format,
                          split=args.split)
    print(result.summary(), file=sys.stderr)
    pairs, report = reward_augment(result.records, chosen_key=args.chosen_key, rejected_key=args.rejected_key,
                                   system_role=not args.no_system_role, low=args.low, high=args.high)
    n = write_records(args.output, pairs)
    drops = ", ".join(f"{k}: {v}" for k, v in sorted(report.dropped.items())) or "none"
    print(f"relabelled {report.pairs_in} pairs into {n} (dropped: {drops}); wrote {args.output}")
    return 0
