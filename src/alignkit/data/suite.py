"""The constraint prompt suite: IFEval-style instruction prompts with verifiable constraints.

Each prompt is a base task ("Write a short poem about honey bees for a curious tourist.") followed by one to three
verifiable constraints from the IFEval verifier set (Zhou et al. 2023, *Instruction-Following Evaluation for Large
Language Models*; the checkers shipped in `if_verifiable.ifeval`), covering all 25 instruction ids it can check
offline. The generator lives in `alignkit.data.suite_gen` (base tasks, constraint kinds, wording, overlap proof).

Record layout (one JSON object per line)::

    {"id": "train-00007", "prompt": "...", "base_task": "...",
     "constraints": [{"id": "punctuation:no_comma", "kwargs": {}}, ...],
     "templates": ["punctuation:no_comma@train.1", ...], "topic": "honey bees", "topic_words": ["honey", ...]}

`constraints[i]["id"]` is an IFEval instruction id, `kwargs` the arguments of its `build_description`, and
`templates[i]` the wording the prompt states it in. The `-v1` splits (the first suite: 256 / 128 prompts, 16 kinds,
IFEval wording only) have no `templates`, `topic` or `topic_words`.

Splits (issue #15 item 1):

* `train` (5,000) and `test` (400): `generate_suite(seed=0)`. Topics are partitioned, so the splits share no base
  task; each split words constraints with its own templates; `check_disjoint` proves both plus the absence of
  near-duplicate prompts.
* `train-v1` / `test-v1`: the frozen files of the first suite, kept byte for byte so old numbers stay comparable.

Regenerate the shipped files with `python -m alignkit.data.suite` (writes `alignkit/resources/suite/`); a test
checks that the generator's output equals them.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from alignkit.data.records import PromptExample
from alignkit.errors import DataError

SPLITS = ("train", "test", "train-v1", "test-v1")
GENERATED_SPLITS = ("train", "test")
DEFAULT_SEED = 0


def generate_suite(seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None,
                   **options: Any) -> dict[str, list[dict[str, Any]]]:
    """The generated suite `{"train": [...], "test": [...]}`; see `suite_gen.generate.generate_suite`."""
    from alignkit.data.suite_gen.generate import generate_suite as _generate

    return _generate(seed, sizes, **options)


def dumps_records(records: list[dict[str, Any]]) -> str:
    """The shipped JSONL text of records (compact separators: the train file stays under 3 MB)."""
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)


def write_suite(out_dir: str | Path, seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None
                ) -> dict[str, Path]:
    """Write `{train,test}.jsonl` under `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, records in generate_suite(seed, sizes).items():
        path = out_dir / f"{split}.jsonl"
        path.write_text(dumps_records(records), encoding="utf-8")
        paths[split] = path
    return paths


def suite_text(split: str) -> str:
    """The shipped JSONL text of `split`."""
    if split not in SPLITS:
        raise DataError(f"unknown suite split {split!r}; choose one of {list(SPLITS)}")
    return resources.files("alignkit").joinpath("resources", "suite", f"{split}.jsonl").read_text(encoding="utf-8")


def suite_records(split: str) -> list[dict[str, Any]]:
    """The shipped suite's raw records for `split`."""
    out = []
    for n, line in enumerate(suite_text(split).splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"resources/suite/{split}.jsonl:{n}: not JSON: {e}") from e
    return out


def to_prompt_example(record: dict[str, Any], split: str | None = None) -> PromptExample:
    """A suite record as a PromptExample (id, base task, topic, templates and split go to `metadata`)."""
    meta = {k: record[k] for k in ("id", "base_task", "topic", "topic_words", "templates") if k in record}
    if split is not None:
        meta["split"] = split
    return PromptExample(prompt=record["prompt"], constraints=list(record["constraints"]), metadata=meta)


def load_suite(split: str) -> list[PromptExample]:
    """The shipped constraint suite as PromptExamples: `train` 5,000, `test` 400, `train-v1` 256, `test-v1` 128."""
    return [to_prompt_example(r, split) for r in suite_records(split)]


def main(argv: list[str] | None = None) -> int:
    """`python -m alignkit.data.suite [OUT_DIR]`: regenerate the shipped train/test files (default: in place)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(str(resources.files("alignkit").joinpath("resources", "suite")))
    for split, path in write_suite(out).items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
