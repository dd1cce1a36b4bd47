"""Download videos with yt-dlp into a content-addressed cache; local files are used where they are.

The parts, in the order a fetch uses them:

* ``sources``: which sources are remote (URLs, YouTube ids) and which local
  (paths, ``file://``), and their keys (``media_key``, ``source_key``);
* ``options``: ``DownloadOptions``, how to fetch (what changes a media key is
  said in ``media_key``);
* ``cache``: the lock-and-commit protocol that makes ``<media_key>.<ext>``
  mean "complete";
* ``tools``: the ffmpeg and deno programs yt-dlp needs;
* ``fetching``: one fetch, its attempts and retries, sections and ``offset_s``;
* ``errors``: transient versus permanent failures, and secrets kept out of
  every message;
* ``many``: several fetches at once, each distinct one once.
"""

from __future__ import annotations

from actalign.download.cache import PARTIAL_DIR
from actalign.download.errors import FetchError, PermanentDownloadError, TransientDownloadError, classify
from actalign.download.fetching import Downloaded, fetch
from actalign.download.many import FetchRequest, fetch_many, fetch_one
from actalign.download.options import DownloadOptions
from actalign.download.sources import YOUTUBE_ID, is_remote, media_key, source_key, youtube_url
from actalign.download.tools import deno_executable, ffmpeg_executable

__all__ = [
    "PARTIAL_DIR",
    "YOUTUBE_ID",
    "DownloadOptions",
    "Downloaded",
    "FetchError",
    "FetchRequest",
    "PermanentDownloadError",
    "TransientDownloadError",
    "classify",
    "deno_executable",
    "fetch",
    "fetch_many",
    "fetch_one",
    "ffmpeg_executable",
    "is_remote",
    "media_key",
    "source_key",
    "youtube_url",
]
