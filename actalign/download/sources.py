"""Sources and their keys: what is fetched, one spelling per video, and the identity of what a fetch yields.

**Remote sources** (``is_remote``): ``http(s)://`` URLs (YouTube pages or any
site yt-dlp knows, or a plain video file through yt-dlp's *generic*
extractor) and bare 11-character YouTube ids. **Local sources**, plain paths
and ``file://`` URLs, are never copied into the cache (``local_path``).
"""

from __future__ import annotations

import functools
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

from actalign.download.errors import PermanentDownloadError
from actalign.download.options import DownloadOptions
from actalign.errors import SegmentOutOfRangeError
from actalign.keys import file_fingerprint, stage_key

KEY_VERSION = 1
"""Bump when the download or cache layout changes so that old files stop matching."""

YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_YOUTUBE_URL = re.compile(
    r"https?://(?:(?:www\.|m\.|music\.)?youtube(?:-nocookie)?\.com/(?:watch\?(?:.*&)?v=|embed/|shorts/|live/|v/)"
    r"|youtu\.be/)(?P<id>[A-Za-z0-9_-]{11})(?![A-Za-z0-9_-])"
)


def youtube_url(youtube_id: str) -> str:
    """The watch URL of a YouTube id (11 characters of [A-Za-z0-9_-])."""
    if not YOUTUBE_ID.fullmatch(youtube_id or ""):
        raise ValueError(f"not a YouTube video id: {youtube_id!r} (expected 11 characters of A-Z a-z 0-9 _ -)")
    return f"https://www.youtube.com/watch?v={youtube_id}"


def is_remote(source: str | os.PathLike[str]) -> bool:
    """http(s) URLs and bare YouTube ids are remote; paths and file:// URLs are local.

    A bare YouTube id is exactly 11 characters of [A-Za-z0-9_-] with no dot or
    slash; a local video file always has an extension, so the two do not clash.
    """
    if isinstance(source, os.PathLike):
        return False
    text = str(source).strip()
    return bool(re.match(r"https?://", text, re.IGNORECASE) or YOUTUBE_ID.fullmatch(text))


def _canonical_source(source: str) -> str:
    """One spelling per video: YouTube ids and their URLs -> 'youtube:<id>'; other URLs as given."""
    text = source.strip()
    if YOUTUBE_ID.fullmatch(text):
        return f"youtube:{text}"
    match = _YOUTUBE_URL.match(text)
    if match:
        return f"youtube:{match.group('id')}"
    return text


def source_url(source: str) -> str:
    """What yt-dlp is given: a bare YouTube id as its watch URL, anything else as it is."""
    text = source.strip()
    return youtube_url(text) if YOUTUBE_ID.fullmatch(text) else text


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def media_key(source: str, start_s: float | None, end_s: float | None, options: DownloadOptions = DownloadOptions()) -> str:
    """Content address of a download: the source (canonical), the segment, the margin and the height cap.

    Not the cookie file, proxy, rate limit, timeouts or retry settings: they
    change how a file is fetched, not what it is. Without a segment the margin
    plays no part (the whole file is fetched).
    """
    segment = start_s is not None or end_s is not None
    config = {
        "source": _canonical_source(str(source)),
        "start_s": _seconds(start_s),
        "end_s": _seconds(end_s),
        "margin_s": _seconds(options.margin_s) if segment else None,
        "max_height": int(options.max_height),
    }
    return stage_key("download", KEY_VERSION, config)


def source_key(source: str, start_s: float | None, end_s: float | None, options: DownloadOptions = DownloadOptions()) -> str:
    """The identity of what fetching ``source`` yields: a remote source's media key, a local file's content.

    A local file is keyed by its bytes, so a moved or renamed file keeps its
    key and an edited one does not; its segment is the caller's to add. Raises
    ``OSError`` when the file cannot be read.
    """
    if is_remote(source):
        return media_key(source, start_s, end_s, options)
    stat = os.stat(source)
    return _content_fingerprint(os.fspath(source), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 16)
def _content_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """Hash a file once per process while its size and mtime stay (planning a run and running it both need it)."""
    return file_fingerprint(path)


def local_path(source: str | os.PathLike[str]) -> Path:
    """The file a local source names: a path as it is, a ``file://`` URL (without a host) decoded."""
    text = os.fspath(source)
    if isinstance(text, str) and text.lower().startswith("file:"):
        parsed = urllib.parse.urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise PermanentDownloadError(f"{text}: file:// URLs must name a local file (no host)", source=text, attempts=0)
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(text)


def check_segment(source: str, start_s: float | None, end_s: float | None) -> None:
    if start_s is not None and start_s < 0:
        raise SegmentOutOfRangeError(f"{source}: start_s={start_s} is negative; give a start >= 0")
    if start_s is not None and end_s is not None and not end_s > start_s:
        raise SegmentOutOfRangeError(f"{source}: end_s={end_s} is not after start_s={start_s}")
