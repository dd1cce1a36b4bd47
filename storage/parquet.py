"""Atomic Parquet writes: a reader never sees a half-written ``*.parquet``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actalign.storage.atomic import replace_atomically


def write_atomic(table: pa.Table, path: Path) -> Path:
    """Write to a temporary name that does not end in .parquet, then rename into place."""
    return replace_atomically(path, lambda tmp: pq.write_table(table, tmp))


def read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One stored file; ``ParquetFile`` skips the dataset discovery of ``read_table`` (2-3x faster on small files)."""
    with pq.ParquetFile(path) as handle:
        return handle.read(columns=columns)
