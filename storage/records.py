"""Status rows and run records: what happened to every item, and what each run was."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actalign.storage import schemas
from actalign.storage.parquet import write_atomic
from actalign.storage.workdir import Workdir


def now() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    """Sorts by start time; the random part keeps two runs started in the same second apart."""
    return f"{now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class StatusRow:
    """The outcome of one item in one stage; ``state`` is ok, skipped (reused) or failed."""

    stage: str
    item: str
    state: str
    key: str | None = None
    error_class: str | None = None
    message: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    recorded_at: datetime = field(default_factory=now)

    @classmethod
    def failed(cls, stage: str, item: str, exc: BaseException, seconds: float = 0.0, key: str | None = None) -> StatusRow:
        """A failed row keeping the real error class and message."""
        return cls(stage, item, "failed", key=key, error_class=type(exc).__name__, message=str(exc), seconds=seconds)


def write_status(workdir: Workdir, run_id: str, stage: str, shard: str, rows: Sequence[StatusRow]) -> None:
    """One file per stage and shard, written once when the shard ends (a retry overwrites it)."""
    records = [{"run_id": run_id, **asdict(row)} for row in rows]
    write_atomic(pa.Table.from_pylist(records, schema=schemas.STATUS), workdir.status_path(run_id, stage, shard))


@dataclass
class RunRecord:
    run_id: str
    started_at: datetime
    model: str
    model_trained: bool
    config: dict[str, Any]
    model_caveat: str | None = None  # the banner of an untrained or toy model
    state: str = "running"
    finished_at: datetime | None = None
    stage_keys: dict[str, Any] = field(default_factory=dict)
    n_videos: int = 0
    n_failed: int = 0
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


def write_run(workdir: Workdir, record: RunRecord) -> None:
    """Write (or replace) the run's record; a crashed run stays visible as 'running' or 'failed'."""
    row = asdict(record)
    row["config"] = json.dumps(record.config, sort_keys=True, default=str)
    row["stage_keys"] = json.dumps(record.stage_keys, sort_keys=True)
    write_atomic(pa.Table.from_pylist([row], schema=schemas.RUNS), workdir.run_record_path(record.run_id))


def mark_interrupted(workdir: Workdir) -> list[str]:
    """Runs still 'running' whose process on this host is gone were killed: say so in their record.

    A killed process cannot write its own end; the next command on the workdir does.
    """
    marked = []
    for path in sorted((workdir.root / "runs").glob("*/run.parquet")):
        row = read_run_row(path)
        if row and row.get("state") == "running" and _process_gone(row):
            row["state"] = "interrupted"
            write_atomic(pa.Table.from_pylist([row], schema=schemas.RUNS), workdir.run_record_path(path.parent.name))
            marked.append(row["run_id"])
    return marked


def maybe_running(row: dict[str, Any]) -> bool:
    """'running' in its record and its process alive, or on another host, where we cannot tell."""
    return row.get("state") == "running" and not _process_gone(row)


def read_run_row(path: Path) -> dict[str, Any] | None:
    """A run record as a dict; None when it is empty or unreadable (a damaged record never stops a command)."""
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException):
        return None
    return rows[0] if rows else None


def _process_gone(row: dict[str, Any]) -> bool:
    return row.get("host") == socket.gethostname() and bool(row.get("pid")) and not _alive(row["pid"])


def _alive(pid: int) -> bool:
    """Is a process of this host alive?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def write_videos(workdir: Workdir, run_id: str, videos: Sequence[Any]) -> None:
    """The run's view of its manifest (``videos`` in SQL); ``videos`` are manifest VideoSpecs."""
    rows = [
        {
            "run_id": run_id,
            "video_id": v.video_id,
            "source": v.source,
            "start_s": v.start_s,
            "end_s": v.end_s,
            "domain": v.domain,
            "candidates": list(v.candidates),
            "label": v.label,
        }
        for v in videos
    ]
    write_atomic(pa.Table.from_pylist(rows, schema=schemas.VIDEOS), workdir.videos_path(run_id))
