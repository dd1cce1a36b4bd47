"""Fetch one video segment with yt-dlp's Python API into the cache, retrying transient failures.

Format
------
``FORMAT_SELECTOR`` picks a *single-file* format, never a video+audio merge
(audio is not needed, and merging needs ffmpeg): the best H.264 video-only
stream at most ``max_height`` pixels high (fast to decode on CPU, and what
ActionAtlas' annotators saw: they downloaded at <= 720p), then any MP4, then
anything at most ``max_height``, then the best there is. ``<=?`` lets formats
of unknown height (the generic extractor) through.

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
  to ffmpeg, so we add them (``_ffmpeg_input_args``).
* **Whole file** (``offset_s = start_s``): when no segment was given, when no
  ffmpeg program can be found (``tools.ffmpeg_executable``), or when yt-dlp
  says the chosen format "cannot be partially downloaded". A whole file is
  cached under the key of the source without a segment, so several segments
  of one source then share one download: a whole-file download for a segment
  also takes the whole file's lock, so that they wait for one download.

Retries: one layer
------------------
yt-dlp's own retries are set to 0 (``retries``, ``fragment_retries``,
``extractor_retries``), so every attempt is one yt-dlp run and countable.
``tenacity`` retries ``TransientDownloadError`` with exponential backoff and
jitter (wait ``backoff_s * 2**(n-1)`` plus up to ``backoff_s`` at random, at
most 60 s), at most ``max_attempts`` attempts; ``PermanentDownloadError`` is
raised at once. Both carry ``attempts``.

The cookie file is copied to a private temporary file for each attempt (yt-dlp
writes its cookie jar back to ``cookiefile`` when it closes; concurrent
downloads would otherwise race on the user's file) and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import yt_dlp
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from yt_dlp.utils import YoutubeDLError, download_range_func

from actalign.download import tools
from actalign.download.cache import Staging, commit, complete_file, key_lock, remove_stale_attempts
from actalign.download.errors import FetchError, PermanentDownloadError, Redactor, TransientDownloadError, classify_exception, error_text
from actalign.download.options import DownloadOptions
from actalign.download.sources import check_segment, is_remote, local_path, media_key, source_url
from actalign.errors import VideoNotFoundError

log = logging.getLogger("actalign.download")

FORMAT_SELECTOR = (
    "bestvideo[height<=?{h}][vcodec^=avc1]"
    "/bestvideo[height<=?{h}][ext=mp4]"
    "/best[height<=?{h}][ext=mp4]"
    "/bestvideo[height<=?{h}]"
    "/best[height<=?{h}]"
    "/best"
)
"""Single-file formats only (no '+' merge): see the module docstring."""


@dataclass(frozen=True)
class Downloaded:
    path: Path  # the complete local file
    offset_s: float  # where the requested start_s lies in this file (sample_frames time); see the module docstring
    attempts: int  # yt-dlp runs made by this call (0: nothing fetched)
    reused: bool  # True when a complete file from an earlier fetch was found and nothing was fetched


@dataclass(frozen=True)
class _Fetch:
    """One fetch of a remote source: what, where and how, the same for all its attempts."""

    source: str
    cache_dir: Path
    start_s: float | None
    end_s: float | None
    options: DownloadOptions

    @property
    def segment(self) -> bool:
        return self.start_s is not None or self.end_s is not None

    @functools.cached_property
    def whole_key(self) -> str:
        return media_key(self.source, None, None, self.options)

    @functools.cached_property
    def key(self) -> str:
        """The media key of the requested segment (of the whole file without a segment)."""
        return media_key(self.source, self.start_s, self.end_s, self.options) if self.segment else self.whole_key

    @functools.cached_property
    def redact(self) -> Redactor:
        return Redactor(self.options)


@dataclass(frozen=True)
class _Attempt:
    """One yt-dlp run of a fetch: its number, the private copy of the cookie file, and a redactor that knows that copy."""

    job: _Fetch
    number: int
    cookiefile: str | None
    redact: Redactor


class _SectionImpossible(Exception):
    """yt-dlp cannot download a section of this format (or finds no ffmpeg)."""


def fetch(
    source: str,
    cache_dir: Path,
    start_s: float | None = None,
    end_s: float | None = None,
    options: DownloadOptions = DownloadOptions(),
) -> Downloaded:
    """Fetch ``source`` (or only ``[start_s - margin, end_s + margin]`` of it) into ``cache_dir``; see the module docstring.

    A local source (a path or a ``file://`` URL) is not copied: it is resolved to
    its path (``attempts == 0``, ``reused == False``, ``offset_s == start_s or 0``),
    or ``VideoNotFoundError`` when the file is missing.
    """
    if not is_remote(source):
        path = local_path(source)
        check_segment(str(source), start_s, end_s)
        if not path.is_file():
            raise VideoNotFoundError(f"{source}: no such video file; check the path")
        return Downloaded(path=path, offset_s=float(start_s or 0.0), attempts=0, reused=False)

    source = str(source).strip()
    check_segment(source, start_s, end_s)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    job = _Fetch(source, cache_dir, start_s, end_s, options)

    with key_lock(cache_dir, job.key):
        for candidate_key, section in ((job.key, job.segment), (job.whole_key, False)):
            done = complete_file(cache_dir, candidate_key)
            if done is not None:
                log.debug("%s: reusing %s", job.redact(source), done.name)
                return Downloaded(path=done, offset_s=_offset(done, start_s, section), attempts=0, reused=True)
        remove_stale_attempts(cache_dir, job.key)
        return _Attempts(job).run()


class _Attempts:
    """The attempts of one fetch: counted, transient failures retried with backoff, a section found impossible not tried again."""

    def __init__(self, job: _Fetch) -> None:
        self.job = job
        self.count = 0
        self.section = job.segment and tools.ffmpeg_executable() is not None

    def run(self) -> Downloaded:
        options = self.job.options
        retrying = Retrying(
            stop=stop_after_attempt(max(1, int(options.max_attempts))),
            # backoff_s * 2^(n-1) plus up to backoff_s of jitter, capped at a minute
            wait=wait_exponential_jitter(multiplier=options.backoff_s, max=max(options.backoff_s, 60.0), exp_base=2, jitter=options.backoff_s),
            retry=retry_if_exception_type(TransientDownloadError),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt)
        except FetchError as exc:
            exc.attempts = self.count
            raise

    def _attempt(self) -> Downloaded:
        """A section download, or the whole file (also in the attempt that finds a section impossible)."""
        self.count += 1
        with _private_cookiefile(self.job.options.cookiefile) as cookiefile:
            attempt = _Attempt(self.job, self.count, cookiefile, Redactor(self.job.options, extra=[cookiefile] if cookiefile else []))
            if self.section:
                try:
                    return _download(attempt, self.job.key, section=True)
                except _SectionImpossible as exc:
                    log.info("%s: %s; fetching the whole file instead", attempt.redact(self.job.source), exc)
                    self.section = False
            return _whole_file(attempt)

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        log.info(
            "%s: attempt %d failed (%s); retrying in %.1f s",
            self.job.redact(self.job.source),
            retry_state.attempt_number,
            exc,
            retry_state.next_action.sleep if retry_state.next_action else 0.0,
        )


def _whole_file(attempt: _Attempt) -> Downloaded:
    """Segments of one source share the whole file, so it has its own lock (always taken after a segment's
    lock, never before: no deadlock), and another fetcher may have just finished it."""
    job = attempt.job
    with key_lock(job.cache_dir, job.whole_key) if job.segment else contextlib.nullcontext():
        done = complete_file(job.cache_dir, job.whole_key)
        if done is not None:
            return Downloaded(path=done, offset_s=float(job.start_s or 0.0), attempts=attempt.number - 1, reused=True)
        return _download(attempt, job.whole_key, section=False)


def _download(attempt: _Attempt, target_key: str, section: bool) -> Downloaded:
    """Run yt-dlp once into a staging folder and commit its file under ``target_key``."""
    job, redact = attempt.job, attempt.redact
    staging = Staging.create(job.cache_dir, target_key, per_attempt=section)
    params = _ydl_params(job.options, redact)
    params["outtmpl"] = {"default": staging.output_template}
    if attempt.cookiefile:
        params["cookiefile"] = attempt.cookiefile
    if section:
        lo = max(0.0, float(job.start_s or 0.0) - job.options.margin_s)
        hi = float("inf") if job.end_s is None else float(job.end_s) + job.options.margin_s
        params["download_ranges"] = download_range_func(None, [(lo, hi)])
        params["external_downloader_args"] = {
            "ffmpeg_i": _ffmpeg_input_args(job.options),
            # Keep source timestamps so offset_s is exact whatever the container (module docstring).
            "ffmpeg_o": ["-copyts", "-start_at_zero"],
        }
    try:
        with tools.ffmpeg_location(tools.ffmpeg_executable()), yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(source_url(job.source), download=True)
    except YoutubeDLError as exc:  # DownloadError, ExtractorError, and RequestError (a redirect or <video src> to file://)
        message = redact(error_text(exc))
        error_class = classify_exception(exc, message)
        if section or error_class is PermanentDownloadError:
            staging.remove()
        else:
            staging.remove_if_empty()
        if section and re.search(r"cannot be partially downloaded|ffmpeg is not installed", message, re.I):
            raise _SectionImpossible(message) from None
        raise error_class(message, source=redact(job.source), attempts=attempt.number) from None
    except OSError as exc:  # our own file operations, or a socket error yt-dlp did not wrap
        if section:
            staging.remove()
        message = redact(f"{type(exc).__name__}: {exc}")
        raise TransientDownloadError(message, source=redact(job.source), attempts=attempt.number) from None
    return _verify_and_commit(attempt, target_key, staging, info, section)


def _ydl_params(options: DownloadOptions, redact: Redactor) -> dict[str, Any]:
    """yt-dlp's parameters shared by every run of these options (the output folder and cookie copy are per attempt)."""
    params: dict[str, Any] = {
        "format": FORMAT_SELECTOR.format(h=int(options.max_height)),
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
    if options.proxy:
        params["proxy"] = options.proxy
    if options.rate_limit:
        params["ratelimit"] = int(options.rate_limit)
    ffmpeg = tools.ffmpeg_executable()
    if ffmpeg:
        params["ffmpeg_location"] = ffmpeg
    deno = tools.deno_executable()
    if deno:
        params["js_runtimes"] = {"deno": {"path": deno}}
    return params


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


def _verify_and_commit(attempt: _Attempt, key: str, staging: Staging, info: dict[str, Any] | None, section: bool) -> Downloaded:
    """Find the finished file in staging, check that PyAV reads a video stream in it, then commit it under ``key``."""
    job, redact = attempt.job, attempt.redact
    downloads = (info or {}).get("requested_downloads") or []
    produced = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if produced is None or not produced.is_file():
        produced = staging.video_file()
    if produced is None:
        raise TransientDownloadError(
            f"{redact(job.source)}: yt-dlp reported success but left no file", source=redact(job.source), attempts=attempt.number
        )
    try:
        offset = _offset(produced, job.start_s, section)
    except (av.FFmpegError, ValueError, OSError) as exc:
        staging.remove()
        raise PermanentDownloadError(
            f"{redact(job.source)}: the downloaded file is not a readable video ({exc})",
            source=redact(job.source),
            attempts=attempt.number,
        ) from None
    final = commit(produced, job.cache_dir, key)
    staging.remove()
    return Downloaded(path=final, offset_s=offset, attempts=attempt.number, reused=False)


def _offset(path: Path, start_s: float | None, section: bool) -> float:
    """Where ``start_s`` lies in the file: a section keeps the source's timestamps, a whole file starts at 0."""
    start = float(start_s or 0.0)
    if not section:
        return start
    return max(0.0, start - _video_stream_start(path))


def _video_stream_start(path: Path) -> float:
    """Seconds at which the file's first video stream starts (the origin of sample_frames' times)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream in the downloaded file")
        stream = container.streams.video[0]
        return float((stream.start_time or 0) * stream.time_base) if stream.time_base else 0.0


class _YtdlpLogger:
    """yt-dlp's messages go to our logger, redacted. Errors are logged at debug: they are raised anyway."""

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact

    def debug(self, message: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("yt-dlp: %s", self._redact(message))

    info = debug

    def warning(self, message: str) -> None:  # e.g. "Falling back on generic information extractor": info, not alarm
        log.info("yt-dlp warning: %s", self._redact(message))

    def error(self, message: str) -> None:
        log.debug("yt-dlp error: %s", self._redact(message))


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
