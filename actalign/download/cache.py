"""The download cache, where "complete" is unambiguous.

``cache_dir/<media_key>.<ext>`` exists only for a complete, verified file:
yt-dlp downloads into a ``Staging`` folder, ``cache_dir/.partial/<media_key>/``
(a whole file: its ``.part`` stays there across failed attempts and crashes,
and yt-dlp resumes it with a Range request) or a fresh
``.partial/<media_key>/attempt-<uuid>/`` per attempt (a section: ffmpeg is a
child process that may outlive a killed worker, and must never write into a
later attempt's file; stale attempt folders are removed by the next fetch of
the key). The finished file, once verified by the caller, is fsynced and
renamed into place with ``os.replace`` (``commit``). Nothing in ``.partial``
is ever taken as complete.

A per-key ``flock`` on ``.partial/<media_key>.lock`` (``key_lock``) serialises
threads and processes that fetch the same key (the kernel releases it when a
process dies); the second one finds the first one's complete file and reuses
it. Lock files stay (a few bytes each); deleting ``cache_dir`` while nothing
runs is always safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PARTIAL_DIR = ".partial"
VIDEO_SUFFIXES = frozenset({"mp4", "m4v", "mov", "mkv", "webm", "avi", "flv", "3gp", "ts", "gif", "mpg", "mpeg", "ogv"})
_STEM = "media"  # what yt-dlp names its file in a staging folder


def complete_file(cache_dir: Path, key: str) -> Path | None:
    """The complete file of a key: '<key>.<video suffix>' at the top of cache_dir, never anything in .partial."""
    for candidate in sorted(cache_dir.glob(f"{key}.*")):
        if candidate.is_file() and candidate.suffix[1:].lower() in VIDEO_SUFFIXES and candidate.stem == key:
            return candidate
    return None


@contextlib.contextmanager
def key_lock(cache_dir: Path, key: str) -> Iterator[None]:
    """Exclusive per key across threads and processes (flock is released by the kernel if we die)."""
    lock_dir = cache_dir / PARTIAL_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{key}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class Staging:
    """The folder one download writes into, under ``.partial``: shared by a whole file's attempts, or one attempt's own."""

    folder: Path
    per_attempt: bool

    @classmethod
    def create(cls, cache_dir: Path, key: str, per_attempt: bool) -> Staging:
        if per_attempt:
            # A fresh folder per attempt: ffmpeg is a child process that outlives a killed
            # worker, and must never share a file with a later attempt.
            folder = cache_dir / PARTIAL_DIR / key / f"attempt-{uuid.uuid4().hex}"
        else:
            # Shared across attempts and crashes: yt-dlp resumes its .part with a Range request.
            folder = cache_dir / PARTIAL_DIR / key
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, per_attempt)

    @property
    def output_template(self) -> str:
        """yt-dlp's 'outtmpl' for this folder."""
        return str(self.folder / f"{_STEM}.%(ext)s")

    def video_file(self) -> Path | None:
        """The one finished video in the folder, if there is exactly one (never a .part)."""
        files = [p for p in self.folder.glob(f"{_STEM}.*") if p.suffix[1:].lower() in VIDEO_SUFFIXES]
        return files[0] if len(files) == 1 else None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.per_attempt:  # the per-attempt folder's parent, once empty
            with contextlib.suppress(OSError):
                self.folder.parent.rmdir()

    def remove_if_empty(self) -> None:
        """Keep a whole file's .part to resume from; drop the folder if nothing is in it."""
        with contextlib.suppress(OSError):
            self.folder.rmdir()


def remove_stale_attempts(cache_dir: Path, key: str) -> None:
    """Section attempts left by a killed process (the caller holds the key's lock, so none is running)."""
    folder = cache_dir / PARTIAL_DIR / key
    for stale in folder.glob("attempt-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def commit(produced: Path, cache_dir: Path, key: str) -> Path:
    """Make a verified file complete: fsync it and rename it to '<key>.<ext>' (the only way a file becomes complete)."""
    ext = produced.suffix[1:].lower()
    if ext not in VIDEO_SUFFIXES:  # e.g. 'unknown_video': PyAV sniffs the content, the name only marks completeness
        ext = "mp4"
    with open(produced, "rb") as handle:
        os.fsync(handle.fileno())
    final = cache_dir / f"{key}.{ext}"
    os.replace(produced, final)
    _fsync_dir(cache_dir)
    return final


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
