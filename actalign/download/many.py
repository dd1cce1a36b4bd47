"""Fetch many segments at once, each distinct one once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from actalign.download.fetching import Downloaded, fetch
from actalign.download.options import DownloadOptions
from actalign.download.sources import is_remote, media_key
from actalign.errors import ItemError


@dataclass(frozen=True)
class FetchRequest:
    source: str
    start_s: float | None = None
    end_s: float | None = None

    def key(self, options: DownloadOptions) -> str:
        """Requests with the same key are one fetch: a remote source's media key, a local file's path and segment."""
        if is_remote(self.source):
            return media_key(self.source, self.start_s, self.end_s, options)
        return f"local:{os.fspath(self.source)}|{self.start_s}|{self.end_s}"


def fetch_one(request: FetchRequest, cache_dir: Path, options: DownloadOptions = DownloadOptions()) -> Downloaded | ItemError:
    """``fetch`` of one request, its ``ItemError`` returned rather than raised (as ``fetch_many`` reports it)."""
    try:
        return fetch(request.source, cache_dir, request.start_s, request.end_s, options)
    except ItemError as exc:
        return exc


def fetch_many(
    requests: Sequence[FetchRequest | tuple[str, float | None, float | None]],
    cache_dir: Path,
    options: DownloadOptions = DownloadOptions(),
    concurrency: int = 4,
) -> list[Downloaded | ItemError]:
    """Fetch several (source, start_s, end_s) with at most ``concurrency`` downloads at once.

    Requests with the same key (``FetchRequest.key``) are fetched once and
    share one result. Results come back in request order: a ``Downloaded``
    or the ``ItemError`` that request failed with. Other exceptions (bugs)
    propagate.
    """
    normalised = [r if isinstance(r, FetchRequest) else FetchRequest(*r) for r in requests]
    keys = [request.key(options) for request in normalised]
    unique: dict[str, FetchRequest] = {}
    for key, request in zip(keys, normalised):
        unique.setdefault(key, request)

    results: dict[str, Downloaded | ItemError] = {}
    if unique:
        with ThreadPoolExecutor(max_workers=max(1, min(int(concurrency), len(unique))), thread_name_prefix="fetch") as pool:
            futures = {key: pool.submit(fetch_one, request, cache_dir, options) for key, request in unique.items()}
            for key, future in futures.items():
                results[key] = future.result()
    return [results[key] for key in keys]
