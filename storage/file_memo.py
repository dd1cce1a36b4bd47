"""What a process read from (or wrote to) a store file, remembered by the file's identity.

The store stays the truth: a value is handed out again only while its file has the
identity (inode, size, modification time) it had when the value was remembered. Store
files are replaced atomically (``storage.atomic``), so every rewrite is a new inode and
is read again. A rewrite in place by another tool, of the same size within one tick of
the file system's clock, would go unseen.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

Value = TypeVar("Value")
Identity = tuple[int, int, int]


def identity(path: Path) -> Identity:
    status = os.stat(path)
    return status.st_ino, status.st_size, status.st_mtime_ns


class FileMemo(Generic[Value]):
    """Values by file, least recently used first out when their sizes pass ``max_bytes``; thread-safe.

    Hand out only values nobody can change (read-only arrays, mappings): every caller gets the same object.
    """

    def __init__(self, max_bytes: int, size: Callable[[Value], int]) -> None:
        self._max_bytes, self._size = max_bytes, size
        self._entries: OrderedDict[str, tuple[Identity, Value, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def read(self, path: Path, parse: Callable[[Path], Value]) -> Value:
        """The value remembered for ``path`` while the file is unchanged, else ``parse(path)`` (remembered)."""
        now = identity(path)
        with self._lock:
            entry = self._entries.get(str(path))
            if entry is not None and entry[0] == now:
                self._entries.move_to_end(str(path))
                return entry[1]
        value = parse(path)
        self._put(str(path), now, value)
        return value

    def remember(self, path: Path, value: Value) -> None:
        """``value`` as what ``path`` holds now (just written): the next ``read`` does not parse it."""
        self._put(str(path), identity(path), value)

    def _put(self, key: str, now: Identity, value: Value) -> None:
        size = self._size(value)
        with self._lock:
            if (old := self._entries.pop(key, None)) is not None:
                self._bytes -= old[2]
            if size > self._max_bytes:
                return
            self._entries[key] = (now, value, size)
            self._bytes += size
            while self._bytes > self._max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][2]
