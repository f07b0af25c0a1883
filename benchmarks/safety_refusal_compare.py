"""Refusal rate of two `alignkit generate` runs over the same prompts (e.g. plain vs guideline-conditioned), on the
harmful requests and on the rest (benign controls), with the paired difference B − A and its 95 % CI.

  python benchmarks/safety_refusal_compare.py plain/samples.jsonl guided/samples.jsonl --harmful h16.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", help="samples.jsonl of the baseline run")
    ap.add_argument("b", help="samples.jsonl of the compared run (same prompts, same order)")
    ap.add_argument("--harmful", required=True, help="the harmful request rows (the others are benign)")
    ap.add_argument("--out")
    args = ap.parse_args()
    from alignkit.data.io import read_jsonl
    from alignkit.evaluate.stats import paired_bootstrap, proportion_ci
    from alignkit.safety.judges import is_refusal

    a, b = read_jsonl(args.a), read_jsonl(args.b)
    if [r["id"] for r in a] != [r["id"] for r in b]:
        raise SystemExit("the two runs are not over the same prompts in the same order")
    harmful = {json.dumps(r["prompt"]) for r in read_jsonl(args.harmful)}
    result = {}
    for group, want in (("harmful", True), ("benign", False)):
        rows = [(x, y) for x, y in zip(a, b, strict=True) if (json.dumps(x["prompt"]) in harmful) == want]
        ra = [float(is_refusal(x["completion"])) for x, _ in rows]
        rb = [float(is_refusal(y["completion"])) for _, y in rows]
        result[group] = {"n": len(rows), "refusal_a": proportion_ci([v > 0 for v in ra]).as_dict(),
                         "refusal_b": proportion_ci([v > 0 for v in rb]).as_dict(),
                         "change_b_minus_a": paired_bootstrap(rb, ra).as_dict()}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
