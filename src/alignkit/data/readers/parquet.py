"""Parquet files, read in batches with pyarrow. Positions are 0-based row indices."""

from __future__ import annotations

from pathlib import Path

from alignkit.data.readers.common import RowStream
from alignkit.errors import DataError


def parquet_rows(path: Path) -> RowStream:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        i = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield i, row
                i += 1
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read Parquet ({e})", source=str(path)) from None

