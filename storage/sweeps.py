"""Where a sweep's records live: ``sweeps/<sweep_id>/`` holds arms.parquet (sweep -> arm -> run id, the
varied settings as columns), the sweep report and the chosen arm's configuration.

arms.parquet is rewritten atomically after every arm, so a killed sweep leaves the arms it finished
recorded and the next sweep of the same grid skips them. The workdir's ``sweeps/.schema/arms.parquet``
placeholder lets the ``sweeps`` view answer on a workdir that never ran a sweep.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actalign.storage.parquet import write_atomic
from actalign.storage.schemas import SWEEP_ARMS
from actalign.storage.workdir import Workdir

_SWEEP_ID = re.compile(r"sw-[0-9a-f]{12}")


def sweep_dir(workdir: Workdir, sweep_id: str) -> Path:
    if not _SWEEP_ID.fullmatch(sweep_id):
        raise ValueError(f"not a sweep id: {sweep_id!r}")
    return workdir.sweep_dir(sweep_id)


def arms_path(workdir: Workdir, sweep_id: str) -> Path:
    return sweep_dir(workdir, sweep_id) / "arms.parquet"


def column_name(field: str) -> str:
    """``prompts.steps`` -> ``prompts_steps``: a varied setting's column in arms.parquet and the view."""
    return field.replace(".", "_")


def write_arms(workdir: Workdir, sweep_id: str, rows: Sequence[dict[str, Any]], varied: Sequence[str]) -> Path:
    """Every arm's row, the fixed columns then one string column per varied setting."""
    schema = pa.schema([*SWEEP_ARMS, *(pa.field(column_name(field), pa.string()) for field in varied)])
    return write_atomic(pa.Table.from_pylist(list(rows), schema=schema), arms_path(workdir, sweep_id))


def read_arms(workdir: Workdir, sweep_id: str) -> list[dict[str, Any]]:
    """The recorded arms of a sweep; none when it never started or its file is unreadable (then it starts over)."""
    path = arms_path(workdir, sweep_id)
    try:
        return pq.read_table(path).to_pylist() if path.exists() else []
    except (OSError, pa.ArrowException):
        return []
