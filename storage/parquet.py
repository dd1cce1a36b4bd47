"""Atomic Parquet writes: a reader never sees a half-written ``*.parquet``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_atomic(table: pa.Table, path: Path) -> Path:
    """Write to a temporary name that does not end in .parquet, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One stored file; ``ParquetFile`` skips the dataset discovery of ``read_table`` (2-3x faster on small files)."""
    with pq.ParquetFile(path) as handle:
        return handle.read(columns=columns)
