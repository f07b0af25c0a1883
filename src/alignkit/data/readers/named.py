"""Named sources that are not paths: the shipped constraint suite (`suite:train`, `suite:test`, ...) and dataset
ids of the Hugging Face hub found in the local cache (`trl-lib/ultrafeedback_binarized`), read offline only.

A name may carry its split after a colon, `SOURCE:SPLIT` (`suite:test`, `owner/name:train`), the way the suite
has always been named; `split=` (`--split`) gives it otherwise. A path that exists always wins over a name.
Hub ids resolve in this order, never touching the network:

1. the hub cache (`huggingface_hub.snapshot_download(..., repo_type="dataset", local_files_only=True)`): the
   snapshot folder is then read as a `datasets` directory (its data files, split by `datasets`' own rules);
2. the `datasets` cache of an earlier `load_dataset(id)` (read with `HF_DATASETS_OFFLINE` behaviour).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alignkit.data.readers.common import RowStream
from alignkit.errors import DataError

SUITE = "suite"
# owner/name (the hub's shape) or a bare canonical dataset name; no path separators beyond the one slash.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# A missing file with a data file's suffix is reported as a missing file, not looked up on the hub.
FILE_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".tsv", ".gz", ".txt"})


def split_name(source: str, split: str | None) -> tuple[str, str | None]:
    """`SOURCE:SPLIT` -> (SOURCE, SPLIT); a `split` given separately must agree with one in the name."""
    name, sep, tail = source.rpartition(":")
    if not sep or not name or "/" in tail or not tail:
        return source, split
    if split is not None and split != tail:
        raise DataError(f"the name says split {tail!r} but split={split!r} (--split) was given; give one",
                        source=source)
    return name, tail


def is_named(source: str) -> bool:
    """Whether a string that is not an existing path names a suite split or a hub dataset id."""
    name, _ = split_name(source, None)
    if name == SUITE:
        return True
    return bool(_HUB_ID.match(name)) and Path(name).suffix.lower() not in FILE_SUFFIXES


def suite_rows(split: str | None, source: str) -> RowStream:
    from alignkit.data.suite import SPLITS, suite_records

    if split is None:
        raise DataError(f"name the suite's split: {', '.join(f'suite:{s}' for s in SPLITS)}", source=source)
    for i, record in enumerate(suite_records(split), start=1):
        yield i, {**record, "split": split}


def hub_rows(name: str, split: str | None, source: str) -> RowStream:
    """Rows of a hub dataset in the local cache (never downloaded)."""
    from alignkit.data.readers.datasets import datasets_rows

    folder = _hub_snapshot(name)
    if folder is not None:
        yield from datasets_rows(folder, split, source=source)
        return
    yield from datasets_rows(_datasets_cache(name, split, source), split, source=source)


def _hub_snapshot(name: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, repo_type="dataset", local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the hub cache, whatever the reason
        return None


def _datasets_cache(name: str, split: str | None, source: str) -> Any:
    import datasets

    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True  # alignkit never downloads at run time
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "not available offline"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError("no such file or directory, and not a dataset in the local Hugging Face cache (alignkit "
                        f"reads hub datasets offline only; {first[:200]})", source=source) from None
    finally:
        datasets.config.HF_HUB_OFFLINE = saved
