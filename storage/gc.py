"""Garbage collection: store entries that no run references, leftovers of killed writes, quarantined files.

A run references what its plan lists (``runs/<run>/plan.parquet``, written before
any work, so an interrupted run keeps what it stored). Everything else in
``store/`` is garbage: outputs of settings no run uses any more. Run results
(``runs/``), downloaded media and the text cache are not touched: delete a run's
folder to drop it, and ``media/`` or ``cache/`` at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actalign.storage.records import maybe_running, read_run_row
from actalign.storage.workdir import SCHEMA, Workdir

TEMP_GLOB = ".*.tmp"  # storage.parquet.write_atomic's temporary names


@dataclass
class Garbage:
    files: list[Path] = field(default_factory=list)  # what gc would delete
    referenced: int = 0  # store files some run references
    unplanned_runs: list[str] = field(default_factory=list)  # runs without a plan (older versions): they reference nothing
    live_runs: list[str] = field(default_factory=list)  # runs that may still be writing

    @property
    def bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files if path.exists())


def find_garbage(workdir: Workdir) -> Garbage:
    """What ``collect`` would delete; reads only plans and run records."""
    garbage, referenced = Garbage(), set()
    for run_dir in sorted(p for p in (workdir.root / "runs").iterdir() if p.is_dir() and p.name != SCHEMA):
        plan = workdir.plan_path(run_dir.name)
        try:
            paths = pq.read_table(plan, columns=["path"]).column("path").to_pylist()
        except (OSError, pa.ArrowException):
            garbage.unplanned_runs.append(run_dir.name)
            paths = []
        referenced.update(workdir.root / path for path in paths if path)
        record = read_run_row(workdir.run_record_path(run_dir.name))
        if record and maybe_running(record):
            garbage.live_runs.append(run_dir.name)
    store = [p for p in (workdir.root / "store").glob("*/*.parquet") if p.stem != SCHEMA]
    garbage.referenced = sum(p in referenced for p in store)
    garbage.files = sorted(p for p in store if p not in referenced)
    garbage.files += sorted(workdir.root.rglob(TEMP_GLOB))
    if workdir.quarantine_dir.exists():
        garbage.files += sorted(p for p in workdir.quarantine_dir.rglob("*") if p.is_file())
    return garbage


def collect(garbage: Garbage) -> int:
    """Delete the garbage; returns the bytes freed. Refuses while a run may be writing."""
    if garbage.live_runs:
        raise RuntimeError(f"run(s) {', '.join(garbage.live_runs)} may still be running; collect when they end")
    freed = garbage.bytes
    for path in garbage.files:
        path.unlink(missing_ok=True)
    return freed
