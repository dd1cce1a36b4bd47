"""One writer per workdir: the commands that write (``run``, ``status``, ``gc``) hold ``<workdir>/.actalign.lock``.

The lock is an ``flock`` on that file, so the kernel drops it when its process dies: a crashed writer
never leaves the workdir locked. The file's JSON names the holder (run id, command, host, pid, since)
for whoever waits; the holder empties it on release. A free lock whose file still names a process of
this host was left by a crash and is taken over; one naming another host is trusted and waited for,
because ``flock`` may not reach across hosts on a network file system. Readers (``actalign sql``,
``report``, ``explain``, any DuckDB client) never take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actalign.errors import ActAlignError

LOCK_NAME = ".actalign.lock"
POLL_S = 0.5  # how often a waiting writer tries again
_held = threading.local()  # the roots this thread holds: a nested write_lock on one of them is a no-op


class WorkdirBusy(ActAlignError):
    """Another writer holds the workdir and the caller asked not to wait."""


def _say(message: str) -> None:
    """To stderr: the CLI, the Python API and a deployment's worker all show it."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def write_lock(
    root: str | Path, command: str, run_id: Callable[[], str] | None = None, *, wait: bool = True
) -> Iterator[str | None]:
    """Hold the workdir's write lock for the block. While another writer holds it: wait, saying once
    who holds it (again if the holder changes), or raise ``WorkdirBusy`` naming it when ``wait`` is False.

    ``run_id`` makes the holder's run id once the lock is taken (so run ids sort by start time, however
    long a run waited); the block gets it."""
    root = Path(root).expanduser().resolve()
    roots: set[Path] = _held.__dict__.setdefault("roots", set())
    if root in roots:
        yield run_id() if run_id else None
        return
    root.mkdir(parents=True, exist_ok=True)
    told = None
    while True:
        fd, holder = _try_lock(root / LOCK_NAME)
        if fd is not None:
            break
        message = f"workdir {root} is being written by {_describe(holder, root)}"
        if not wait:
            raise WorkdirBusy(f"{message}; not waiting (--no-wait)")
        if message != told:
            _say(f"{message}; waiting for it to finish (Ctrl-C stops waiting)")
            told = message
        time.sleep(POLL_S)
    if holder:
        _say(f"took over the lock of workdir {root} left by {_describe(holder, root)}: that process is gone")
    roots.add(root)
    try:
        me = {"run_id": run_id() if run_id else None, "command": command, "host": socket.gethostname(), "pid": os.getpid(),
              "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield me["run_id"]
    finally:
        roots.discard(root)
        try:
            os.ftruncate(fd, 0)  # released: nothing named
        finally:
            os.close(fd)


def _try_lock(path: Path) -> tuple[int | None, dict[str, Any] | None]:
    """(descriptor of the emptied file, the holder it replaces) when the lock is now ours; (None, the holder) when not."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        return None, holder
    left = _read(fd)
    if left and left.get("host") != socket.gethostname():
        os.close(fd)
        return None, left
    os.ftruncate(fd, 0)
    return fd, left


def _read(fd: int) -> dict[str, Any] | None:
    """The holder the file names; None when it is empty (free, or its holder has not written it yet) or unreadable."""
    try:
        holder = json.loads(os.pread(fd, 65536, 0) or b"null")
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict[str, Any] | None, root: Path) -> str:
    if not holder:
        return "another actalign process (starting: it has not named itself yet)"
    what = f"run {holder['run_id']}" if holder.get("run_id") else f"actalign {holder.get('command', '?')}"
    host = holder.get("host")
    if host == socket.gethostname():
        return f"{what} (pid {holder.get('pid')} on this host, since {holder.get('since')})"
    return (f"{what} (pid {holder.get('pid')} on host {host}, since {holder.get('since')}; a process on another host "
            f"cannot be checked from here: if it is gone, delete {root / LOCK_NAME})")
