"""actalign.download through the real yt-dlp (generic extractor) against a loopback HTTP server: no mocks.

The server (tests/http_fixtures.py) scripts 404s, 500s, dropped connections,
slow answers and throttled bodies per path and counts the requests it gets.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from http_fixtures import CLIPS_DIR, Behaviour, LoopbackServer, make_video

from actalign.download import (
    PARTIAL_DIR,
    DownloadOptions,
    FetchRequest,
    PermanentDownloadError,
    TransientDownloadError,
    classify,
    deno_executable,
    fetch,
    fetch_many,
    fetching,
    ffmpeg_executable,
    is_remote,
    media_key,
    tools,
    youtube_url,
)
from actalign.download.cache import complete_file
from actalign.download.errors import Redactor
from actalign.errors import ItemError, SegmentOutOfRangeError, VideoNotFoundError
from actalign.frames import sample_frames

FAST = DownloadOptions(backoff_s=0.01, socket_timeout_s=5.0, max_attempts=4)
HAS_FFMPEG = ffmpeg_executable() is not None


def _segment_indices(path: Path, offset_s: float) -> list[int]:
    """The frame indices shown over 2 s from offset_s, sampled mid-frame (at 25 fps a sample instant on a frame
    boundary is float-fragile: 3.0 + 18/25 < 3.72)."""
    sampled = sample_frames(path, fps=25.0, size=(96, 128), start_s=offset_s + 0.02, end_s=offset_s + 2.0)
    return [_bar_index(f) for f in sampled.frames]


def _bar_index(image: np.ndarray) -> int:
    """The frame index written by http_fixtures.frame_pattern (8 bit bars in the lower 3/4)."""
    height, width = image.shape[:2]
    bar = width // 8
    return sum(1 << bit for bit in range(8) if image[height // 2 :, bit * bar + bar // 2, 0].mean() > 128)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(max_lifetime_s=300) as running:
        yield running


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": make_video(folder / "v.mp4", seconds=8.0, fps=25, size=(96, 128), gop=50),
        "webm": make_video(folder / "v.webm", seconds=8.0, fps=25, size=(96, 128), gop=50, codec="libvpx-vp9"),
        "big": make_video(folder / "big.mp4", seconds=4.0, fps=25, size=(240, 320), noise=60),
    }


def _real_clip() -> Path | None:
    clip = CLIPS_DIR / "arm_wrestling.mp4"
    return clip if clip.is_file() else None


# --- a good URL, reuse -------------------------------------------------------------------


def test_good_url_complete_then_reused_with_no_request(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    source = _real_clip() or videos["mp4"]
    url = server.add("/good.mp4", source)
    first = fetch(url, tmp_path, options=FAST)
    assert not first.reused and first.attempts == 1 and first.offset_s == 0.0
    assert first.path.parent == tmp_path and first.path.name == f"{media_key(url, None, None, FAST)}.mp4"
    assert first.path.read_bytes() == source.read_bytes()
    assert not any((tmp_path / PARTIAL_DIR).glob("*/*")), "the staging folder is emptied"
    requests = server.requests("/good.mp4")
    assert requests == 2  # the generic extractor looks at the headers, then the download

    again = fetch(url, tmp_path, options=FAST)
    assert again.reused and again.attempts == 0 and again.path == first.path
    assert server.requests("/good.mp4") == requests  # zero new requests
    # A segment of a source whose whole file is cached reuses it too, at the segment's start.
    part = fetch(url, tmp_path, 1.0, 2.0, options=FAST)
    assert part.reused and part.path == first.path and part.offset_s == 1.0
    assert server.requests("/good.mp4") == requests


@pytest.mark.skipif(not HAS_FFMPEG, reason="no ffmpeg program (PATH or imageio-ffmpeg) for section downloads")
@pytest.mark.parametrize("kind", ["mp4", "webm"])
def test_section_download_holds_exactly_the_segment(
    server: LoopbackServer, videos: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """Only [start - margin, end + margin] is fetched, and offset_s points at the requested start."""
    url = server.add(f"/section.{kind}", videos[kind])
    options = DownloadOptions(backoff_s=0.01, margin_s=1.0)
    got = fetch(url, tmp_path, 3.0, 5.0, options=options)
    assert not got.reused and got.attempts == 1
    assert got.path.suffix == f".{kind}"
    assert got.path.stat().st_size < videos[kind].stat().st_size
    assert _segment_indices(got.path, got.offset_s) == list(range(75, 125))  # frames 3.0 s .. 4.96 s at 25 fps
    # Keyframes every 2 s: the section starts at the keyframe at 2.0 s, so the start lies 1.0 s in.
    assert got.offset_s == pytest.approx(1.0)
    again = fetch(url, tmp_path, 3.0, 5.0, options=options)
    assert again.reused and again.offset_s == got.offset_s


def test_whole_file_fallback_without_ffmpeg(
    server: LoopbackServer, videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ffmpeg: the whole file is fetched under the source's key and offset_s is the absolute start."""
    monkeypatch.setattr(tools, "ffmpeg_executable", lambda: None)
    url = server.add("/fallback.webm", videos["webm"])
    got = fetch(url, tmp_path, 3.0, 5.0, options=FAST)
    assert got.offset_s == 3.0 and got.path.name == f"{media_key(url, None, None, FAST)}.webm"
    assert got.path.read_bytes() == videos["webm"].read_bytes()
    assert _segment_indices(got.path, got.offset_s) == list(range(75, 125))
    other = fetch(url, tmp_path, 6.0, 7.0, options=FAST)  # another segment of the same source: no new download
    assert other.reused and other.path == got.path and other.offset_s == 6.0


# --- failures ---------------------------------------------------------------------------


def test_404_is_permanent_after_one_attempt(server: LoopbackServer, tmp_path: Path) -> None:
    url = server.add("/gone.mp4", b"", Behaviour(statuses=(404,) * 20))
    with pytest.raises(PermanentDownloadError) as info:
        fetch(url, tmp_path, options=FAST)
    assert info.value.attempts == 1 and server.requests("/gone.mp4") == 1
    assert "HTTP Error 404: Not Found" in str(info.value)  # yt-dlp's text, verbatim
    assert isinstance(info.value, ItemError) and info.value.error_class == "PermanentDownloadError"
    assert not list(tmp_path.glob("*.mp4"))


def test_500_twice_then_ok(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    url = server.add("/flaky.mp4", videos["mp4"], Behaviour(statuses=(500, 500)))
    got = fetch(url, tmp_path, options=FAST)
    assert got.attempts == 3 and not got.reused
    assert got.path.read_bytes() == videos["mp4"].read_bytes()
    assert server.requests("/flaky.mp4") == 4  # 500, 500, then headers + download


def test_500_forever_is_transient_after_max_attempts(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    url = server.add("/down.mp4", videos["mp4"], Behaviour(statuses=(503,) * 20))
    with pytest.raises(TransientDownloadError) as info:
        fetch(url, tmp_path, options=DownloadOptions(backoff_s=0.01, max_attempts=3))
    assert info.value.attempts == 3 and server.requests("/down.mp4") == 3
    assert "HTTP Error 503" in str(info.value)


def test_dropped_connection_is_retried_and_resumed(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    data = videos["big"].read_bytes()
    url = server.add("/drop.mp4", data, Behaviour(drop_after_bytes=len(data) // 3, drop_requests=(2,)))
    got = fetch(url, tmp_path, options=FAST)
    assert got.attempts == 2
    assert got.path.read_bytes() == data
    resumed = [h for h in server.range_headers("/drop.mp4") if h != "bytes=0-"]
    assert resumed and int(resumed[-1].removeprefix("bytes=").rstrip("-")) > 0  # continued from the .part


@pytest.mark.skipif(not HAS_FFMPEG, reason="no ffmpeg program for section downloads")
def test_dropped_connection_during_a_section(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    """ffmpeg alone would end the input early and exit 0 (a silently short WebM); with -reconnect it resumes."""
    data = videos["webm"].read_bytes()
    url = server.add("/drop-section.webm", data, Behaviour(drop_after_bytes=len(data) // 3, drop_requests=(2,)))
    got = fetch(url, tmp_path, 3.0, 5.0, options=DownloadOptions(backoff_s=0.01, margin_s=1.0))
    assert _segment_indices(got.path, got.offset_s) == list(range(75, 125))


def test_slow_beyond_timeout_is_transient_after_max_attempts(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    url = server.add("/slow.mp4", videos["mp4"], Behaviour(delay_s=5.0))
    options = DownloadOptions(backoff_s=0.01, socket_timeout_s=0.3, max_attempts=2)
    started = time.perf_counter()
    with pytest.raises(TransientDownloadError) as info:
        fetch(url, tmp_path, options=options)
    assert info.value.attempts == 2 and server.requests("/slow.mp4") == 2
    assert "timed out" in str(info.value)
    assert time.perf_counter() - started < 4.0  # two 0.3 s timeouts, not even one 5 s wait


def test_unsupported_page_is_permanent(server: LoopbackServer, tmp_path: Path) -> None:
    url = server.add("/page.html", b"<html><body>no video here</body></html>", Behaviour(content_type="text/html"))
    with pytest.raises(PermanentDownloadError, match="Unsupported URL") as info:
        fetch(url, tmp_path, options=FAST)
    assert info.value.attempts == 1


@pytest.mark.parametrize("segment", [(None, None), (1.0, 2.0)], ids=["whole", "section"])
def test_a_page_or_redirect_to_a_local_file_is_permanent_and_leaves_nothing(
    server: LoopbackServer, tmp_path: Path, segment: tuple[float | None, float | None]
) -> None:
    """yt-dlp refuses file:// with a RequestError (neither a DownloadError nor an ExtractorError): it must be classified."""
    page = b'<html><body><video src="file:///etc/passwd"></video></body></html>'
    hostile = [
        server.add("/hostile.html", page, Behaviour(content_type="text/html")),
        server.add("/redirect.mp4", b"", Behaviour(statuses=(302,) * 20, location="file:///etc/passwd")),
    ]
    for url in hostile:
        with pytest.raises(PermanentDownloadError) as info:
            fetch(url, tmp_path, *segment, options=FAST)
        assert info.value.attempts == 1 and "root:" not in str(info.value)
    assert [p.name for p in (tmp_path / PARTIAL_DIR).iterdir() if p.suffix != ".lock"] == []  # lock files stay, by design
    assert [p.name for p in tmp_path.iterdir()] == [PARTIAL_DIR]


# --- secrets ----------------------------------------------------------------------------


def test_cookies_and_proxy_credentials_never_in_errors_or_logs(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cookie_value = "SECRETCOOKIEVALUE4711"
    cookiefile = tmp_path / "private-cookies.txt"
    content = f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\t{cookie_value}\n"
    cookiefile.write_text(content)
    url = server.add("/secret-404.mp4", b"", Behaviour(statuses=(404,) * 20))
    caplog.set_level(logging.DEBUG, logger="actalign")
    with pytest.raises(PermanentDownloadError) as info:
        fetch(url, tmp_path / "cache", options=DownloadOptions(cookiefile=str(cookiefile), backoff_s=0.01))
    with socket_closed_port() as port:
        proxy = f"http://alice:PROXYPASSWORD99@127.0.0.1:{port}"
        with pytest.raises(TransientDownloadError) as proxied:
            fetch(url, tmp_path / "cache", options=DownloadOptions(proxy=proxy, max_attempts=2, backoff_s=0.01))
    for text in (str(info.value), str(proxied.value), caplog.text):
        assert cookie_value not in text
        assert str(cookiefile) not in text and cookiefile.name not in text
        assert "PROXYPASSWORD99" not in text and "alice" not in text
    assert "HTTP Error 404" in str(info.value)
    assert proxied.value.attempts == 2
    assert cookiefile.read_text() == content  # yt-dlp wrote its jar back to a private copy, not to the user's file
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("actalign-cookies-*"))


class socket_closed_port:
    """A loopback port with nothing listening (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        return port

    def __exit__(self, *exc: object) -> None:
        pass


# --- classification of real yt-dlp error texts -------------------------------------------

REAL_MESSAGES = [
    # (yt-dlp's text as users report it, expected class)
    ("ERROR: [youtube] dQw4w9WgXcQ: Private video. Sign in if you've been granted access to this video", PermanentDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: Video unavailable. This video has been removed by the uploader", PermanentDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: Video unavailable. This video is no longer available because the YouTube account associated with this video has been terminated.", PermanentDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: This video has been removed for violating YouTube's Terms of Service", PermanentDownloadError),
    ("ERROR: [youtube] ltcd1B8WyTM: Video unavailable. The uploader has not made this video available in your country", PermanentDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: The uploader has not made this video available in your country\nThis video is available in Germany.\nYou might want to use a VPN or a proxy server (with --proxy) to workaround.", PermanentDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: Video unavailable. This video contains content from SME, who has blocked it in your country on copyright grounds", PermanentDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: Sign in to confirm your age. This video may be inappropriate for some users. Use --cookies-from-browser or --cookies for the authentication.", PermanentDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: Unable to download API page: HTTP Error 429: Too Many Requests (caused by <HTTPError 429: Too Many Requests>)", TransientDownloadError),
    ("ERROR: [youtube] tJ51nR4-tLs: Sign in to confirm you’re not a bot. This helps protect our community. Learn more", TransientDownloadError),
    ("ERROR: [youtube] rVXeIRY6H9c: Sign in to confirm you�re not a bot. This helps protect our community. Learn more", TransientDownloadError),
    ("ERROR: [youtube] tpUr8xVxj-w: Sign in to confirm you're not a bot. Use --cookies-from-browser or --cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to manually pass cookies.", TransientDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: Video unavailable. This content isn't available, try again later. The current session has been rate-limited by YouTube for up to an hour.", TransientDownloadError),
    ("ERROR: [youtube] dQw4w9WgXcQ: Video unavailable. YouTube is requiring a captcha challenge before playback", TransientDownloadError),
    ("ERROR: unable to download video data: HTTP Error 403: Forbidden", TransientDownloadError),
    ("ERROR: [generic] e500: Unable to download webpage: HTTP Error 500: Internal Server Error (caused by <HTTPError 500: Internal Server Error>)", TransientDownloadError),
    ("ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found (caused by <HTTPError 404: Not Found>)", PermanentDownloadError),
    ("ERROR: [generic] x: Unable to download webpage: HTTP Error 410: Gone", PermanentDownloadError),
    ("ERROR: Unsupported URL: http://example.invalid/page.html", PermanentDownloadError),
    ("ERROR: [download] Got error: 43648 bytes read, 87296 more expected", TransientDownloadError),
    ("ERROR: [generic] slow: Unable to download webpage: HTTPConnectionPool(host='127.0.0.1', port=1): Read timed out. (read timeout=0.5)", TransientDownloadError),
    ("ERROR: [youtube] x: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name resolution>", TransientDownloadError),
    ("ERROR: ffmpeg exited with code 8", TransientDownloadError),
    ("ERROR: [youtube] x: Requested format is not available. Use --list-formats for a list of available formats", PermanentDownloadError),
    ("ERROR: [youtube] x: This live event will begin in 3 hours.", PermanentDownloadError),
    ("ERROR: something nobody has seen before", PermanentDownloadError),
]


@pytest.mark.parametrize(("message", "expected"), REAL_MESSAGES)
def test_classify_real_messages(message: str, expected: type) -> None:
    assert classify(message) is expected


# --- keys, sources ----------------------------------------------------------------------


def test_media_key_covers_what_and_not_how() -> None:
    base = DownloadOptions()
    key = media_key("https://example.org/v.mp4", 1.0, 2.0, base)
    assert key == media_key("https://example.org/v.mp4", 1, 2.0000001, base)
    assert key == media_key(
        "https://example.org/v.mp4", 1.0, 2.0,
        DownloadOptions(cookiefile="/c.txt", proxy="http://u:p@h:1", rate_limit=10, socket_timeout_s=1, max_attempts=9, backoff_s=5),
    )
    assert key != media_key("https://example.org/v.mp4", 1.0, 3.0, base)
    assert key != media_key("https://example.org/v.mp4", 1.0, 2.0, DownloadOptions(margin_s=0.5))
    assert key != media_key("https://example.org/v.mp4", 1.0, 2.0, DownloadOptions(max_height=360))
    assert key != media_key("https://example.org/w.mp4", 1.0, 2.0, base)
    whole = media_key("https://example.org/v.mp4", None, None, base)
    assert whole == media_key("https://example.org/v.mp4", None, None, DownloadOptions(margin_s=9))  # no segment, no margin
    assert media_key("dQw4w9WgXcQ", 1, 2) == media_key("https://www.youtube.com/watch?v=dQw4w9WgXcQ", 1, 2)
    assert media_key("dQw4w9WgXcQ", 1, 2) == media_key("https://youtu.be/dQw4w9WgXcQ", 1, 2)


def test_sources() -> None:
    assert is_remote("https://www.youtube.com/watch?v=dQw4w9WgXcQ") and is_remote("HTTP://host/x.mp4")
    assert is_remote("dQw4w9WgXcQ") and is_remote("-_abcdefghi")
    assert not is_remote("/data/v.mp4") and not is_remote("clip.mp4") and not is_remote("file:///data/v.mp4")
    assert not is_remote("dQw4w9WgXc.") and not is_remote(Path("dQw4w9WgXcQ"))
    assert youtube_url("dQw4w9WgXcQ") == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    with pytest.raises(ValueError):
        youtube_url("short")


def test_local_files_and_file_urls_are_not_copied(videos: dict[str, Path], tmp_path: Path) -> None:
    path = videos["mp4"]
    for source in (str(path), path.as_uri()):
        got = fetch(source, tmp_path, 2.0, 3.0)
        assert got.path == path and got.offset_s == 2.0 and got.attempts == 0 and not got.reused
    assert not list(tmp_path.iterdir())
    with pytest.raises(VideoNotFoundError):
        fetch(str(tmp_path / "missing.mp4"), tmp_path)
    with pytest.raises(SegmentOutOfRangeError):
        fetch(str(path), tmp_path, 3.0, 2.0)


# --- many ---------------------------------------------------------------------------------


def test_fetch_many_deduplicates_and_keeps_order(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    shared = server.add("/shared.mp4", videos["mp4"])
    other = server.add("/other.webm", videos["webm"])
    missing = server.add("/missing.mp4", b"", Behaviour(statuses=(404,) * 20))
    requests = [
        FetchRequest(shared),
        (other, None, None),
        FetchRequest(shared),  # the same source and segment as row 0: one download
        FetchRequest(missing),
        FetchRequest(str(videos["mp4"]), 1.0, 2.0),  # local: no download at all
    ]
    results = fetch_many(requests, tmp_path, FAST, concurrency=4)
    assert len(results) == 5
    assert results[0] is results[2]
    assert results[0].path.read_bytes() == videos["mp4"].read_bytes()
    assert results[1].path.suffix == ".webm"
    assert isinstance(results[3], PermanentDownloadError) and results[3].attempts == 1
    assert results[4].path == videos["mp4"] and results[4].offset_s == 1.0
    assert server.requests("/shared.mp4") == 2  # one yt-dlp run: headers + download


def test_same_key_from_two_threads_downloads_once(server: LoopbackServer, videos: dict[str, Path], tmp_path: Path) -> None:
    """The per-key lock: a second fetcher of the same key waits and then reuses the first one's file."""
    from concurrent.futures import ThreadPoolExecutor

    url = server.add("/twice.mp4", videos["big"], Behaviour(bytes_per_s=3_000_000))
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: fetch(url, tmp_path, options=FAST), range(2))
    assert a.path == b.path and sorted([a.reused, b.reused]) == [False, True]
    assert server.requests("/twice.mp4") == 2


# --- kill and resume ------------------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from actalign.download import DownloadOptions, fetch
fetch(sys.argv[1], Path(sys.argv[2]), options=DownloadOptions(backoff_s=0.01, max_attempts=1))
print("finished")
"""


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_killed_download_resumes_and_never_counts_as_complete(
    server: LoopbackServer, videos: dict[str, Path], tmp_path: Path
) -> None:
    data = videos["big"].read_bytes()
    url = server.add("/killme.mp4", data, Behaviour(bytes_per_s=250_000))  # about 6 s for the whole file
    key = media_key(url, None, None, FAST)
    partial = tmp_path / PARTIAL_DIR / key / "media.mp4.part"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, url, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (partial.is_file() and partial.stat().st_size > len(data) // 4):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never got a quarter of the file"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # a real signal to a real process, mid-download
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    child.stdout.close()
    child.stderr.close()

    partial_size = partial.stat().st_size
    assert 0 < partial_size < len(data)
    assert complete_file(tmp_path, key) is None  # no complete file: the partial is not one
    assert not [p for p in tmp_path.iterdir() if p.is_file()]

    server.add("/killme.mp4", data)  # full speed from now on
    got = fetch(url, tmp_path, options=FAST)
    assert not got.reused and got.attempts == 1
    assert got.path == tmp_path / f"{key}.mp4"
    assert got.path.read_bytes() == data  # complete and byte-identical to the source
    resumed = [h for h in server.range_headers("/killme.mp4") if h != "bytes=0-"]
    assert resumed and int(resumed[-1].removeprefix("bytes=").rstrip("-")) > 0  # continued from the partial
    assert not partial.exists()


def test_segments_of_one_source_share_one_whole_file_download(
    server: LoopbackServer, videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ffmpeg, two segments fetched at once wait for one whole-file download (its own lock)."""
    monkeypatch.setattr(tools, "ffmpeg_executable", lambda: None)
    url = server.add("/two-segments.mp4", videos["big"], Behaviour(bytes_per_s=3_000_000))
    first, second = fetch_many([(url, 1.0, 2.0), (url, 2.5, 3.5)], tmp_path, FAST, concurrency=2)
    assert first.path == second.path and (first.offset_s, second.offset_s) == (1.0, 2.5)
    assert sorted([first.reused, second.reused]) == [False, True]
    assert server.requests("/two-segments.mp4") == 2


def test_youtube_javascript_runtime_is_found_when_installed() -> None:
    """YouTube needs yt-dlp-ejs and a JS runtime; the deno package's binary is passed to yt-dlp explicitly."""
    import yt_dlp

    deno = deno_executable()
    if deno is None:
        pytest.skip("no deno on PATH and the deno package is not installed")
    params = fetching._ydl_params(DownloadOptions(), Redactor(DownloadOptions()))
    with yt_dlp.YoutubeDL(params) as ydl:
        assert ydl._js_runtimes["deno"].info.supported
