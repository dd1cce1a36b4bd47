"""Garbage collection: store entries that no run references, leftovers of killed writes, quarantined files.

A run references what its plan lists (``runs/<run>/plan.parquet``, written before
any work, so an interrupted run keeps what it stored). Everything else in
``store/`` is garbage: outputs of settings no run uses any more. Run results
(``runs/``), downloaded media and the text cache are not touched: delete a run's
folder to drop it, and ``media/`` or ``cache/`` at any time.

gc deletes only inside the folders ``owned_dirs`` names, and never follows a
symlink: a linked folder is not entered, and a symlink there is garbage itself
(actalign writes none), deleted as a link, so its target is never touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
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
        return sum(path.lstat().st_size for path in self.files if os.path.lexists(path))


def owned_dirs(workdir: Workdir) -> tuple[Path, Path, Path]:
    """The only folders gc deletes in; never ``runs/``, ``media/`` (yt-dlp's own temporary files) or a folder of yours."""
    return workdir.store_dir, workdir.cache_dir, workdir.quarantine_dir


def _entries(folder: Path) -> Iterator[Path]:
    """Files and symlinks below ``folder``, without entering a symlinked folder (nor ``folder`` if it is a link)."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for parent, dirs, files in os.walk(folder):  # followlinks=False: a linked folder is listed in dirs, not walked
        yield from (Path(parent, name) for name in files)
        yield from (Path(parent, name) for name in dirs if os.path.islink(os.path.join(parent, name)))


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
    for folder in owned_dirs(workdir):
        for path in _entries(folder):
            stored = folder == workdir.store_dir and len(path.relative_to(folder).parts) == 2 and path.suffix == ".parquet" and path.stem != SCHEMA
            if path.is_symlink() or fnmatch(path.name, TEMP_GLOB) or folder == workdir.quarantine_dir or (stored and path not in referenced):
                garbage.files.append(path)
            elif stored:
                garbage.referenced += 1
    garbage.files.sort()
    return garbage


def collect(garbage: Garbage) -> int:
    """Delete the garbage; returns the bytes freed. Refuses while a run may be writing."""
    if garbage.live_runs:
        raise RuntimeError(f"run(s) {', '.join(garbage.live_runs)} may still be running; collect when they end")
    freed = garbage.bytes
    for path in garbage.files:
        if path.parent.resolve() == path.parent:  # no folder on the way was swapped for a symlink since find_garbage
            path.unlink(missing_ok=True)  # a symlink itself, never its target
    return freed
