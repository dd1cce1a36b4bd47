"""Fetch one video segment with yt-dlp's Python API, into a content-addressed cache.

What is downloaded
------------------
* **Remote sources** (``is_remote``): ``http(s)://`` URLs (YouTube pages or any
  site yt-dlp knows, or a plain video file through yt-dlp's *generic*
  extractor) and bare 11-character YouTube ids. **Local sources**, plain paths
  and ``file://`` URLs, are *not* copied: ``fetch`` resolves them to the path
  (``attempts == 0``, ``reused == False``, ``offset_s == start_s or 0``) and
  raises ``VideoNotFoundError`` when the file is missing. This keeps local
  files and ``file://`` on the same code path of the acquire stage without a
  pointless copy (yt-dlp could read ``file://`` with ``enable_file_urls``, but
  would only duplicate the bytes).
* **YouTube** needs, besides yt-dlp, the ``yt-dlp-ejs`` scripts and a
  JavaScript runtime to solve its player challenges (yt-dlp 2025.11 and
  later); ``deno_executable`` finds the ``deno`` package's binary.
* **Format**: ``FORMAT_SELECTOR`` picks a *single-file* format, never a
  video+audio merge (audio is not needed, and merging needs ffmpeg): the best
  H.264 video-only stream at most ``max_height`` pixels high (fast to decode on
  CPU, and what ActionAtlas' annotators saw: they downloaded at <= 720p), then
  any MP4, then anything at most ``max_height``, then the best there is.
  ``<=?`` lets formats of unknown height (the generic extractor) through.

Segment downloads and ``offset_s``
----------------------------------
``offset_s`` is where the requested ``start_s`` lies in the returned file, in
the time coordinates of ``actalign.frames.sample_frames`` (seconds from the
file's video stream start). The caller decodes exactly the segment with::

    sample_frames(d.path, fps, size, start_s=d.offset_s, end_s=d.offset_s + (end_s - start_s))

* **Section download** (a segment was given and an ffmpeg program is
  available): yt-dlp's ``download_ranges`` fetches ``[start_s - margin_s,
  end_s + margin_s]`` (clipped at 0) through ffmpeg (``-ss``/``-t`` on the
  input, ``-c copy``, so the cut starts at the keyframe before the section
  start). ffmpeg is also told ``-copyts -start_at_zero``: the file keeps the
  source's own timestamps, so the requested start is still ``start_s`` in it,
  whatever the keyframe spacing or container (without ``-copyts`` an MP4 hides
  the pre-roll with an edit list but WebM/Matroska/AVI shift the keyframe to
  0, and the segment would silently move by up to a GOP). Hence
  ``offset_s = start_s - <the file's video stream start>``. This works for the
  generic extractor on a plain HTTP file as well (ffmpeg seeks with Range
  requests). yt-dlp passes neither its socket timeout nor any reconnection
  to ffmpeg, so we add ``-rw_timeout`` (a stalled server would hang ffmpeg
  forever) and ``-reconnect`` (a connection dropped mid-file otherwise ends
  ffmpeg's input early, and ffmpeg exits 0 with a silently short WebM).
* **Whole file** (``offset_s = start_s``): when no segment was given, when no
  ffmpeg program can be found (PATH, else the ``imageio-ffmpeg`` package's
  binary), or when yt-dlp says the chosen format "cannot be partially
  downloaded". A whole file is cached under the key of the source without a
  segment, so several segments of one source then share one download.

Cache layout: "complete" is unambiguous
---------------------------------------
``cache_dir/<media_key>.<ext>`` exists only for a complete, verified file:
yt-dlp downloads into ``cache_dir/.partial/<media_key>/`` (a whole file: its
``.part`` stays there across failed attempts and crashes, and yt-dlp resumes it
with a Range request) or into a fresh ``.partial/<media_key>/attempt-<uuid>/``
per attempt (a section: ffmpeg is a child process that may outlive a killed
worker, and must never write into a later attempt's file; stale attempt
folders are removed by the next fetch of the key). The finished file is
opened with PyAV (a video stream must be there), fsynced and renamed into
place with ``os.replace``. Nothing in ``.partial`` is ever taken as complete.
A per-key ``flock`` on ``.partial/<media_key>.lock`` serialises threads and
processes that fetch the same key (the kernel releases it when a process
dies); the second one finds the first one's complete file and reuses it. A
whole-file download for a segment also takes the whole file's lock, so that
several segments of one source wait for one download. Lock files stay (a few
bytes each); deleting ``cache_dir`` while nothing runs is always safe.

Retries: one layer
------------------
yt-dlp's own retries are set to 0 (``retries``, ``fragment_retries``,
``extractor_retries``), so every attempt is one yt-dlp run and countable.
``tenacity`` retries ``TransientDownloadError`` with exponential backoff and
jitter (wait ``backoff_s * 2**(n-1)`` plus up to ``backoff_s`` at random, at
most 60 s), at most ``max_attempts`` attempts;
``PermanentDownloadError`` is raised at once. Both carry ``attempts`` and keep
yt-dlp's error text verbatim, minus secrets (the cookie file's path, the proxy,
credentials in URLs).

Secrets
-------
The cookie file is copied to a private temporary file for each attempt (yt-dlp
writes its cookie jar back to ``cookiefile`` when it closes; concurrent
downloads would otherwise race on the user's file) and deleted afterwards.
Neither the cookie file, its content nor the proxy is part of ``media_key``,
of any log record or of any error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import yt_dlp
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from yt_dlp.utils import YoutubeDLError, download_range_func

from actalign.errors import ItemError, SegmentOutOfRangeError, VideoNotFoundError
from actalign.keys import stage_key

log = logging.getLogger(__name__)

KEY_VERSION = 1
"""Bump when the download or cache layout changes so that old files stop matching."""

PARTIAL_DIR = ".partial"
VIDEO_SUFFIXES = frozenset({"mp4", "m4v", "mov", "mkv", "webm", "avi", "flv", "3gp", "ts", "gif", "mpg", "mpeg", "ogv"})

FORMAT_SELECTOR = (
    "bestvideo[height<=?{h}][vcodec^=avc1]"
    "/bestvideo[height<=?{h}][ext=mp4]"
    "/best[height<=?{h}][ext=mp4]"
    "/bestvideo[height<=?{h}]"
    "/best[height<=?{h}]"
    "/best"
)
"""Single-file formats only (no '+' merge): see the module docstring."""

YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_YOUTUBE_URL = re.compile(
    r"https?://(?:(?:www\.|m\.|music\.)?youtube(?:-nocookie)?\.com/(?:watch\?(?:.*&)?v=|embed/|shorts/|live/|v/)"
    r"|youtu\.be/)(?P<id>[A-Za-z0-9_-]{11})(?![A-Za-z0-9_-])"
)


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


@dataclass(frozen=True)
class Downloaded:
    path: Path  # the complete local file
    offset_s: float  # where the requested start_s lies in this file (sample_frames time); see the module docstring
    attempts: int  # yt-dlp runs made by this call (0: nothing fetched)
    reused: bool  # True when a complete file from an earlier fetch was found and nothing was fetched


@dataclass(frozen=True)
class FetchRequest:
    source: str
    start_s: float | None = None
    end_s: float | None = None


class FetchError(ItemError):
    """Base of the download failures: yt-dlp's text (secrets removed), the source, and the attempts made."""

    def __init__(self, message: str, *, source: str = "", attempts: int = 1) -> None:
        super().__init__(message)
        self.source = source
        self.attempts = attempts


class TransientDownloadError(FetchError):
    """Network trouble, timeouts, HTTP 5xx, 429, YouTube's bot check: worth retrying later."""


class PermanentDownloadError(FetchError):
    """Private, removed, unavailable, geo-blocked, HTTP 404/410, unsupported URL: retrying will not help."""


# --- classification -------------------------------------------------------------

_TRANSIENT_FIRST = [  # checked before the permanent patterns: these texts can contain "Video unavailable"
    r"confirm you.{0,3}re not a bot",  # YouTube's bot check (the apostrophe is often ’ or mojibake)
    r"content isn.{0,3}t available, try again later",  # YouTube's session rate limit (up to an hour)
    r"rate.?limited",
    r"captcha",
]
_PERMANENT = [
    r"private video",
    r"this video is private",
    r"video unavailable",
    r"this video (?:is|has been) (?:no longer )?(?:unavailable|removed)",
    r"has been removed",
    r"no longer available",
    r"account associated with this video has been terminated",
    r"removed for violating",
    r"not (?:made this video )?available in your country",
    r"not available from your location",
    r"blocked it in your country",
    r"geo.?restrict",
    r"http error 40[0-14-9](?!\d)",  # 400, 401, 404, 405..409 (403 is transient: see below)
    r"http error 410(?!\d)",
    r"\b(?:404|410)\b.{0,20}(?:not found|gone)",
    r"unsupported url",
    r"is not a valid url",
    r"no video formats found",
    r"requested format is not available",
    r"sign in to confirm your age",
    r"age.restricted",
    r"members.only",
    r"join this channel",
    r"this live event will begin",
    r"premieres in",
    r"copyright",
]
_TRANSIENT = [
    r"http error 5\d\d",
    r"http error 429",
    r"too many requests",
    r"http error 403",  # YouTube media URLs answer 403 when a session is throttled or expired; a new extraction helps
    r"timed? ?out",
    r"connection (?:refused|reset|aborted|broken)",
    r"remote end closed connection",
    r"incompleteread|incomplete read|incomplete data",
    r"did not get any data blocks",
    r"bytes read, \d+ more expected",  # yt-dlp's HTTP downloader on a connection closed mid-file
    r"content.?too.?short",
    r"temporary failure in name resolution",
    r"name or service not known",
    r"network is unreachable",
    r"no route to host",
    r"fragment",
    r"ffmpeg exited with code",
    r"try again later",
    r"rate.?limit",
    r"temporarily unavailable",
    r"unable to (?:download|connect|extract)",  # what is left of these after the permanent causes above
]


def classify(message: str) -> type[ItemError]:
    """The error class for one of yt-dlp's error texts (see the pattern lists above).

    Order: YouTube's bot check ("Sign in to confirm you're not a bot"), its
    session rate limit ("This content isn't available, try again later") and
    captcha are transient; then permanent conditions (private, removed, unavailable,
    geo-blocked, HTTP 400/401/404/410, unsupported URL, age- or
    membership-restricted, not yet live); then transient ones (HTTP 5xx, 429,
    403, timeouts, dropped connections, DNS failures, incomplete data, an ffmpeg
    failure mid-download). Anything else is permanent: a re-run retries failed
    items anyway, and an unknown error retried four times only costs time.
    """
    text = message.casefold()
    if any(re.search(p, text) for p in _TRANSIENT_FIRST):
        return TransientDownloadError
    if any(re.search(p, text) for p in _PERMANENT):
        return PermanentDownloadError
    if any(re.search(p, text) for p in _TRANSIENT):
        return TransientDownloadError
    return PermanentDownloadError


def _classify_exception(exc: BaseException, message: str) -> type[FetchError]:
    """classify(message), except that an unknown text caused by a network failure is transient."""
    cls = classify(message)
    if cls is PermanentDownloadError and not any(re.search(p, message.casefold()) for p in _PERMANENT):
        from http.client import IncompleteRead

        from yt_dlp.networking.exceptions import TransportError
        from yt_dlp.utils import ContentTooShortError

        network = (TransportError, ContentTooShortError, IncompleteRead, TimeoutError, ConnectionError)
        cause: BaseException | None = exc
        for _ in range(10):  # yt-dlp keeps the original exception in .exc_info, Python in __cause__/__context__
            if cause is None:
                break
            if isinstance(cause, network):
                return TransientDownloadError
            inner = getattr(cause, "exc_info", None)
            nested = inner[1] if isinstance(inner, tuple) and len(inner) > 1 else None
            cause = nested if nested is not None and nested is not cause else (cause.__cause__ or cause.__context__)
    return cls  # type: ignore[return-value]


# --- sources and keys -------------------------------------------------------------


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


def _source_url(source: str) -> str:
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


# --- secrets ------------------------------------------------------------------------


class _Redactor:
    """Removes the cookie file's path, the proxy and URL credentials from any text."""

    def __init__(self, options: DownloadOptions, extra: Sequence[str] = ()) -> None:
        secrets = [s for s in (options.cookiefile, options.proxy, *extra) if s]
        if options.cookiefile:
            secrets.append(os.path.abspath(options.cookiefile))
            secrets.append(os.path.basename(options.cookiefile))
        if options.proxy:
            parsed = urllib.parse.urlsplit(options.proxy if "://" in options.proxy else f"http://{options.proxy}")
            secrets += [x for x in (parsed.username, parsed.password, parsed.netloc) if x]
        # Very short strings (a cookie file called "c") would mangle every message; URL credentials
        # are removed by the pattern below whatever their length.
        self._secrets = sorted({x for x in secrets if len(x) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@", r"\1<redacted>@", text)


class _YtdlpLogger:
    """yt-dlp's messages go to our logger, redacted. Errors are logged at debug: they are raised anyway."""

    def __init__(self, redact: _Redactor) -> None:
        self._redact = redact

    def debug(self, message: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("yt-dlp: %s", self._redact(message))

    info = debug

    def warning(self, message: str) -> None:  # e.g. "Falling back on generic information extractor": info, not alarm
        log.info("yt-dlp warning: %s", self._redact(message))

    def error(self, message: str) -> None:
        log.debug("yt-dlp error: %s", self._redact(message))


# --- ffmpeg -------------------------------------------------------------------------

def _program(name: str, packaged: Callable[[], str]) -> str | None:
    """``name`` on PATH, else the binary a Python package ships, else None."""
    found = shutil.which(name)
    if found is not None:
        return found
    try:
        return packaged()
    except Exception:  # not installed, or no binary for this platform
        return None


@functools.cache
def ffmpeg_executable() -> str | None:
    """The ffmpeg program for section downloads: ffmpeg on PATH, else imageio-ffmpeg's binary, else None."""
    return _program("ffmpeg", lambda: importlib.import_module("imageio_ffmpeg").get_ffmpeg_exe())


@functools.cache
def deno_executable() -> str | None:
    """The JavaScript runtime yt-dlp needs for YouTube (its 'n' and signature challenges, with yt-dlp-ejs).

    deno on PATH, else the binary of the ``deno`` package (in the venv's bin,
    which is not on PATH when the CLI runs without activating the venv), else
    None: yt-dlp then warns and YouTube offers fewer or no formats. (Node.js
    works too, but only from version 22; this machine has 20.)
    """
    return _program("deno", lambda: importlib.import_module("deno").find_deno_bin())


@contextlib.contextmanager
def _ffmpeg_location(path: str | None) -> Iterator[None]:
    """Make yt-dlp's FFmpegFD see our ffmpeg in this thread.

    FFmpegFD.available() ignores the ``ffmpeg_location`` parameter and reads a
    ContextVar that only yt-dlp's command line sets; a ContextVar set in one
    thread is invisible to the others, so set it around each download.
    """
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    var = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
    if path is None or var is None:
        yield
        return
    token = var.set(path)
    try:
        yield
    finally:
        var.reset(token)


# --- fetch --------------------------------------------------------------------------


def _local_path(source: str | os.PathLike[str]) -> Path:
    text = os.fspath(source)
    if isinstance(text, str) and text.lower().startswith("file:"):
        parsed = urllib.parse.urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise PermanentDownloadError(f"{text}: file:// URLs must name a local file (no host)", source=text, attempts=0)
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(text)


def _check_segment(source: str, start_s: float | None, end_s: float | None) -> None:
    if start_s is not None and start_s < 0:
        raise SegmentOutOfRangeError(f"{source}: start_s={start_s} is negative; give a start >= 0")
    if start_s is not None and end_s is not None and not end_s > start_s:
        raise SegmentOutOfRangeError(f"{source}: end_s={end_s} is not after start_s={start_s}")


def _complete_file(cache_dir: Path, key: str) -> Path | None:
    """The complete file of a key: '<key>.<video suffix>' at the top of cache_dir, never anything in .partial."""
    for candidate in sorted(cache_dir.glob(f"{key}.*")):
        if candidate.is_file() and candidate.suffix[1:].lower() in VIDEO_SUFFIXES and candidate.stem == key:
            return candidate
    return None


@contextlib.contextmanager
def _key_lock(cache_dir: Path, key: str) -> Iterator[None]:
    """Exclusive per key across threads and processes (flock is released by the kernel if we die)."""
    lock_dir = cache_dir / PARTIAL_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{key}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _video_stream_start(path: Path) -> float:
    """Seconds at which the file's first video stream starts (the origin of sample_frames' times)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream in the downloaded file")
        stream = container.streams.video[0]
        return float((stream.start_time or 0) * stream.time_base) if stream.time_base else 0.0


def _offset(path: Path, start_s: float | None, section: bool) -> float:
    start = float(start_s or 0.0)
    if not section:
        return start
    return max(0.0, start - _video_stream_start(path))


def fetch(
    source: str,
    cache_dir: Path,
    start_s: float | None = None,
    end_s: float | None = None,
    options: DownloadOptions = DownloadOptions(),
) -> Downloaded:
    """Fetch ``source`` (or only ``[start_s - margin, end_s + margin]`` of it) into ``cache_dir``; see the module docstring."""
    if not is_remote(source):
        path = _local_path(source)
        _check_segment(str(source), start_s, end_s)
        if not path.is_file():
            raise VideoNotFoundError(f"{source}: no such video file; check the path")
        return Downloaded(path=path, offset_s=float(start_s or 0.0), attempts=0, reused=False)

    source = str(source).strip()
    _check_segment(source, start_s, end_s)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    segment = start_s is not None or end_s is not None
    whole_key = media_key(source, None, None, options)
    key = media_key(source, start_s, end_s, options) if segment else whole_key
    redact = _Redactor(options)

    with _key_lock(cache_dir, key):
        for candidate_key, section in ((key, segment), (whole_key, False)):
            done = _complete_file(cache_dir, candidate_key)
            if done is not None:
                log.debug("%s: reusing %s", redact(source), done.name)
                return Downloaded(path=done, offset_s=_offset(done, start_s, section), attempts=0, reused=True)

        _remove_stale_attempts(cache_dir, key)
        attempts = 0
        state = {"section": segment and ffmpeg_executable() is not None}

        def attempt() -> Downloaded:
            nonlocal attempts
            attempts += 1
            return _attempt(source, cache_dir, key, whole_key, start_s, end_s, options, state, attempts)

        def before_sleep(retry_state: RetryCallState) -> None:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            log.info(
                "%s: attempt %d failed (%s); retrying in %.1f s",
                redact(source),
                retry_state.attempt_number,
                exc,
                retry_state.next_action.sleep if retry_state.next_action else 0.0,
            )

        retrying = Retrying(
            stop=stop_after_attempt(max(1, int(options.max_attempts))),
            # backoff_s * 2^(n-1) plus up to backoff_s of jitter, capped at a minute
            wait=wait_exponential_jitter(
                multiplier=options.backoff_s, max=max(options.backoff_s, 60.0), exp_base=2, jitter=options.backoff_s
            ),
            retry=retry_if_exception_type(TransientDownloadError),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except FetchError as exc:
            exc.attempts = attempts
            raise


def _ydl_params(options: DownloadOptions, outdir: Path, cookiefile: str | None, redact: _Redactor) -> dict[str, Any]:
    params: dict[str, Any] = {
        "format": FORMAT_SELECTOR.format(h=int(options.max_height)),
        "outtmpl": {"default": str(outdir / "media.%(ext)s")},
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "logger": _YtdlpLogger(redact),
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "file_access_retries": 0,
        "socket_timeout": float(options.socket_timeout_s),
        "noplaylist": True,
        "continuedl": True,  # resume a whole-file download from its .part after a crash
        "overwrites": False,
        "updatetime": False,
        "writeinfojson": False,
        "noresizebuffer": False,
    }
    if cookiefile:
        params["cookiefile"] = cookiefile
    if options.proxy:
        params["proxy"] = options.proxy
    if options.rate_limit:
        params["ratelimit"] = int(options.rate_limit)
    ffmpeg = ffmpeg_executable()
    if ffmpeg:
        params["ffmpeg_location"] = ffmpeg
    deno = deno_executable()
    if deno:
        params["js_runtimes"] = {"deno": {"path": deno}}
    return params


def _attempt(
    source: str,
    cache_dir: Path,
    key: str,
    whole_key: str,
    start_s: float | None,
    end_s: float | None,
    options: DownloadOptions,
    state: dict[str, bool],
    attempt_number: int,
) -> Downloaded:
    """One yt-dlp run (plus, at most once, the whole-file fallback); maps failures to our two error classes."""
    with _private_cookiefile(options.cookiefile) as cookiefile:
        redact = _Redactor(options, extra=[cookiefile] if cookiefile else [])
        if state["section"]:
            try:
                return _run(source, cache_dir, key, start_s, end_s, options, cookiefile, redact, True, attempt_number)
            except _SectionImpossible as exc:
                log.info("%s: %s; fetching the whole file instead", redact(source), exc)
                state["section"] = False
        # Whole file: segments of one source share it, so it has its own lock (always taken after a
        # segment's lock, never before: no deadlock), and another fetcher may have just finished it.
        with _key_lock(cache_dir, whole_key) if whole_key != key else contextlib.nullcontext():
            done = _complete_file(cache_dir, whole_key)
            if done is not None:
                return Downloaded(path=done, offset_s=float(start_s or 0.0), attempts=attempt_number - 1, reused=True)
            return _run(source, cache_dir, whole_key, start_s, end_s, options, cookiefile, redact, False, attempt_number)


class _SectionImpossible(Exception):
    """yt-dlp cannot download a section of this format (or finds no ffmpeg)."""


def _run(
    source: str,
    cache_dir: Path,
    target_key: str,
    start_s: float | None,
    end_s: float | None,
    options: DownloadOptions,
    cookiefile: str | None,
    redact: _Redactor,
    section: bool,
    attempt_number: int,
) -> Downloaded:
    if section:
        # A fresh folder per attempt: ffmpeg is a child process that outlives a killed
        # worker, and must never share a file with a later attempt.
        staging = cache_dir / PARTIAL_DIR / target_key / f"attempt-{uuid.uuid4().hex}"
    else:
        # Shared across attempts and crashes: yt-dlp resumes its .part with a Range request.
        staging = cache_dir / PARTIAL_DIR / target_key
    staging.mkdir(parents=True, exist_ok=True)
    params = _ydl_params(options, staging, cookiefile, redact)
    if section:
        lo = max(0.0, float(start_s or 0.0) - options.margin_s)
        hi = float("inf") if end_s is None else float(end_s) + options.margin_s
        params["download_ranges"] = download_range_func(None, [(lo, hi)])
        params["external_downloader_args"] = {
            "ffmpeg_i": _ffmpeg_input_args(options),
            # Keep source timestamps so offset_s is exact whatever the container (module docstring).
            "ffmpeg_o": ["-copyts", "-start_at_zero"],
        }
    try:
        with _ffmpeg_location(ffmpeg_executable()), yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(_source_url(source), download=True)
    except YoutubeDLError as exc:  # DownloadError, ExtractorError, and RequestError (a redirect or <video src> to file://)
        message = redact(_message(exc))
        error_class = _classify_exception(exc, message)
        if section or error_class is PermanentDownloadError:
            _remove_staging(staging, section)
        else:  # keep a whole-file .part to resume from; drop the folder if nothing is in it
            with contextlib.suppress(OSError):
                staging.rmdir()
        if section and re.search(r"cannot be partially downloaded|ffmpeg is not installed", message, re.I):
            raise _SectionImpossible(message) from None
        raise error_class(message, source=redact(source), attempts=attempt_number) from None
    except OSError as exc:  # our own file operations, or a socket error yt-dlp did not wrap
        if section:
            _remove_staging(staging, section)
        message = redact(f"{type(exc).__name__}: {exc}")
        raise TransientDownloadError(message, source=redact(source), attempts=attempt_number) from None
    return _commit(source, cache_dir, target_key, staging, info, start_s, section, redact, attempt_number)


def _remove_staging(staging: Path, section: bool) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    if section:  # the per-attempt folder's parent, once empty
        with contextlib.suppress(OSError):
            staging.parent.rmdir()


def _remove_stale_attempts(cache_dir: Path, key: str) -> None:
    """Section attempts left by a killed process (we hold the key's lock, so none is ours)."""
    folder = cache_dir / PARTIAL_DIR / key
    for stale in folder.glob("attempt-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _ffmpeg_input_args(options: DownloadOptions) -> list[str]:
    """Timeouts and resumption for ffmpeg's own HTTP reads (yt-dlp passes neither to ffmpeg).

    Without ``-rw_timeout`` a stalled server hangs ffmpeg forever. Without
    ``-reconnect`` a connection dropped mid-file ends ffmpeg's input early and
    ffmpeg exits 0 with a silently truncated section (seen with WebM); with it,
    ffmpeg resumes the read with a Range request from where it stopped.
    """
    return [
        "-rw_timeout", str(int(options.socket_timeout_s * 1_000_000)),
        "-reconnect", "1",
        "-reconnect_on_network_error", "1",
        "-reconnect_delay_max", "2",
    ]


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes, should any slip through
    return re.sub(r"^ERROR:\s*", "", text)


def _commit(
    source: str,
    cache_dir: Path,
    key: str,
    staging: Path,
    info: dict[str, Any] | None,
    start_s: float | None,
    section: bool,
    redact: _Redactor,
    attempt_number: int,
) -> Downloaded:
    """Verify the finished file in staging, then rename it to '<key>.<ext>' (the only way a file becomes complete)."""
    downloads = (info or {}).get("requested_downloads") or []
    produced = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if produced is None or not produced.is_file():
        files = [p for p in staging.glob("media.*") if p.suffix[1:].lower() in VIDEO_SUFFIXES]
        produced = files[0] if len(files) == 1 else None
    if produced is None:
        raise TransientDownloadError(
            f"{redact(source)}: yt-dlp reported success but left no file", source=redact(source), attempts=attempt_number
        )
    ext = produced.suffix[1:].lower()
    if ext not in VIDEO_SUFFIXES:  # e.g. 'unknown_video': PyAV sniffs the content, the name only marks completeness
        ext = "mp4"
    try:
        offset = _offset(produced, start_s, section)
    except (av.FFmpegError, ValueError, OSError) as exc:
        _remove_staging(staging, section)
        raise PermanentDownloadError(
            f"{redact(source)}: the downloaded file is not a readable video ({exc})",
            source=redact(source),
            attempts=attempt_number,
        ) from None
    with open(produced, "rb") as handle:
        os.fsync(handle.fileno())
    final = cache_dir / f"{key}.{ext}"
    os.replace(produced, final)
    _fsync_dir(cache_dir)
    _remove_staging(staging, section)
    return Downloaded(path=final, offset_s=offset, attempts=attempt_number, reused=False)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _private_cookiefile(cookiefile: str | None) -> Iterator[str | None]:
    """A private (0600) copy of the cookie file for one attempt, deleted afterwards (yt-dlp writes it back on close)."""
    if not cookiefile:
        yield None
        return
    handle, copy = tempfile.mkstemp(prefix="actalign-cookies-", suffix=".txt")
    try:
        try:
            with open(cookiefile, "rb") as src:
                os.write(handle, src.read())
        except OSError as exc:
            raise PermanentDownloadError(
                f"cannot read the cookie file ({exc.strerror or type(exc).__name__}); check the --cookies option",
                attempts=0,
            ) from None
        finally:
            os.close(handle)
        yield copy
    finally:
        with contextlib.suppress(OSError):
            os.unlink(copy)


# --- many -----------------------------------------------------------------------------


def fetch_many(
    requests: Sequence[FetchRequest | tuple[str, float | None, float | None]],
    cache_dir: Path,
    options: DownloadOptions = DownloadOptions(),
    concurrency: int = 4,
) -> list[Downloaded | ItemError]:
    """Fetch several (source, start_s, end_s) with at most ``concurrency`` downloads at once.

    Requests with the same media key (same source and segment) are fetched once
    and share one result. Results come back in request order: a ``Downloaded``
    or the ``ItemError`` that request failed with. Other exceptions (bugs)
    propagate.
    """
    normalised = [r if isinstance(r, FetchRequest) else FetchRequest(*r) for r in requests]
    keys: list[str] = []
    unique: dict[str, FetchRequest] = {}
    for request in normalised:
        if is_remote(request.source):
            key = media_key(request.source, request.start_s, request.end_s, options)
        else:
            key = f"local:{os.fspath(request.source)}|{request.start_s}|{request.end_s}"
        keys.append(key)
        unique.setdefault(key, request)

    def run(request: FetchRequest) -> Downloaded | ItemError:
        try:
            return fetch(request.source, cache_dir, request.start_s, request.end_s, options)
        except ItemError as exc:
            return exc

    results: dict[str, Downloaded | ItemError] = {}
    if unique:
        with ThreadPoolExecutor(max_workers=max(1, min(int(concurrency), len(unique))), thread_name_prefix="fetch") as pool:
            futures = {key: pool.submit(run, request) for key, request in unique.items()}
            for key, future in futures.items():
                results[key] = future.result()
    return [results[key] for key in keys]
