"""Download failures: retry or not, decided from yt-dlp's text, and never holding a secret.

yt-dlp's error text is kept verbatim in both classes, minus secrets: the
cookie file's path, the proxy and credentials in URLs. Neither the cookie
file, its content nor the proxy is part of a media key, of any log record or
of any error message.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Sequence

from actalign.download.options import DownloadOptions
from actalign.errors import ItemError


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


def classify_exception(exc: BaseException, message: str) -> type[FetchError]:
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


def error_text(exc: BaseException) -> str:
    """yt-dlp's message without its 'ERROR:' prefix and colour codes."""
    text = str(exc).strip()
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes, should any slip through
    return re.sub(r"^ERROR:\s*", "", text)


class Redactor:
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
