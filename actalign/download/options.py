"""How to fetch: the settings a run gives every download."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DownloadOptions:
    max_height: int = 720  # resolution cap, applied in FORMAT_SELECTOR (single-file formats only)
    margin_s: float = 2.0  # extra seconds fetched before and after a segment
    cookiefile: str | None = field(default=None, repr=False)  # never logged, never in error messages, never in keys
    proxy: str | None = field(default=None, repr=False)  # never logged, never in error messages, never in keys
    rate_limit: int | None = None  # bytes/s (yt-dlp 'ratelimit')
    socket_timeout_s: float = 30.0
    max_attempts: int = 4  # transient failures: exponential backoff with jitter (tenacity)
    backoff_s: float = 1.0  # first wait between attempts
