"""`datasets` directories (`save_to_disk` output or a folder of data files) and in-memory `datasets.Dataset`s.
Positions are 0-based row indices (what `dataset[i]` gives)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.data.readers.common import RowStream
from alignkit.errors import DataError


def datasets_rows(path: Path | Any, split: str | None, source: str | None = None) -> RowStream:
    import datasets

    if isinstance(path, (datasets.Dataset, datasets.DatasetDict)):
        ds = path
        source = source or "<dataset>"
    else:
        source = source or str(path)
        try:
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                ds = datasets.load_from_disk(str(path))
            else:
                ds = datasets.load_dataset(str(path), split=split)
        except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "cannot load"
            raise DataError(f"cannot load as a datasets directory ({type(e).__name__}: {e})", source=source) from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise DataError(f"choose a split with split=... (--split); this dataset has {sorted(ds)}", source=source)
        ds = ds[split]
    for i, row in enumerate(ds):
        yield i, dict(row)
