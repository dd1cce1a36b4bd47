"""A loopback HTTP server with scripted misbehaviour, and generated test videos.

Used by the download tests and benchmark to drive the real yt-dlp (its generic
extractor) without the internet. Everything listens on 127.0.0.1 only, on a
free port, and the server shuts itself down after ``max_lifetime_s`` even if a
test forgets to stop it; every sleep inside a handler wakes up on shutdown.

Per path a :class:`Behaviour` scripts what the server does:

* ``statuses``: the HTTP status of the 1st, 2nd, ... request (GET or HEAD);
  requests past the list get the normal 200/206 answer. ``(500, 500)`` is "500
  twice, then OK"; ``(404,) * 100`` is a permanent 404.
* ``drop_after_bytes`` / ``drop_requests``: the requests with these numbers
  (1-based, counting every request to the path) announce the full
  Content-Length, send that many bytes and close the connection (a connection
  dropped mid-file). yt-dlp's generic extractor makes one request to look at
  the headers and a second one to download, so ``drop_requests=(2,)`` drops
  the first download.
* ``delay_s`` / ``delay_requests``: wait before sending the status line of the
  requests with these numbers (all requests when None): a slow server, a
  timeout when beyond the client's socket timeout.
* ``bytes_per_s``: throttle the body (for kill-and-resume tests).
* ``delay_per_request_s``: a fixed latency on every request (benchmarks).
* ``ranges``: honour ``Range: bytes=a-b`` with 206 (default True).
* ``location``: the Location header sent with the scripted statuses (``statuses=(302,)``: a redirect).

``requests(path)`` counts every request per path; ``range_headers(path)`` lists
the Range headers received.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from actalign.video_files import write_video

CLIPS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "clips"

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
    ".gif": "image/gif",
}


@dataclass(frozen=True)
class Behaviour:
    statuses: tuple[int, ...] = ()
    drop_after_bytes: int | None = None
    drop_requests: tuple[int, ...] = (2,)
    delay_s: float = 0.0
    delay_requests: tuple[int, ...] | None = None
    bytes_per_s: float | None = None
    delay_per_request_s: float = 0.0
    ranges: bool = True
    content_type: str | None = None
    location: str | None = None


class LoopbackServer:
    """``with LoopbackServer() as server: server.add("/a.mp4", data); url = server.url("/a.mp4")``."""

    def __init__(self, max_lifetime_s: float = 120.0) -> None:
        self._files: dict[str, tuple[bytes, Behaviour, str]] = {}
        self._lock = threading.Lock()
        self._counts: dict[str, int] = defaultdict(int)
        self._ranges: dict[str, list[str]] = defaultdict(list)
        self.stopped = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(max_lifetime_s, self.stop)
        self._timer.daemon = True

    # --- lifecycle -------------------------------------------------------

    def start(self) -> "LoopbackServer":
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- content ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, data: bytes | Path, behaviour: Behaviour = Behaviour()) -> str:
        """Serve ``data`` (bytes or a file's content) at ``path``; returns its URL."""
        body = Path(data).read_bytes() if isinstance(data, Path) else bytes(data)
        content_type = behaviour.content_type or CONTENT_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")
        with self._lock:
            self._files[path] = (body, behaviour, content_type)
        return self.url(path)

    def requests(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    def total_requests(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def range_headers(self, path: str) -> list[str]:
        with self._lock:
            return list(self._ranges[path])

    # --- handler ---------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server._counts[path] += 1
                    number = server._counts[path]
                    entry = server._files.get(path)
                    if self.headers.get("Range"):
                        server._ranges[path].append(self.headers["Range"])
                if entry is None:
                    self._plain(404, b"not found")
                    return
                data, behaviour, content_type = entry
                if behaviour.delay_per_request_s and server.stopped.wait(behaviour.delay_per_request_s):
                    return
                if behaviour.delay_s and (behaviour.delay_requests is None or number in behaviour.delay_requests):
                    if server.stopped.wait(behaviour.delay_s):
                        return
                if number <= len(behaviour.statuses) and behaviour.statuses[number - 1] != 200:
                    status = behaviour.statuses[number - 1]
                    self._plain(status, f"scripted status {status}".encode(), behaviour.location)
                    return
                start, end = 0, len(data) - 1
                range_header = self.headers.get("Range")
                partial = False
                if range_header and behaviour.ranges:
                    match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
                    if match and (match.group(1) or match.group(2)):
                        if match.group(1):
                            start = int(match.group(1))
                            end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
                        else:  # suffix range: the last N bytes
                            start = max(0, len(data) - int(match.group(2)))
                        if start >= len(data) or start > end:
                            self.send_response(416)
                            self.send_header("Content-Range", f"bytes */{len(data)}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        partial = True
                chunk = data[start : end + 1]
                self.send_response(206 if partial else 200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(chunk)))
                if behaviour.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                if partial:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                if behaviour.drop_after_bytes is not None and number in behaviour.drop_requests:
                    self._write(chunk[: behaviour.drop_after_bytes], behaviour.bytes_per_s)
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)  # SHUT_RDWR: the client sees a short read
                    return
                self._write(chunk, behaviour.bytes_per_s)

            def _write(self, chunk: bytes, bytes_per_s: float | None) -> None:
                try:
                    if not bytes_per_s:
                        self.wfile.write(chunk)
                        return
                    step = max(1, int(bytes_per_s / 20))  # 20 writes per second
                    for offset in range(0, len(chunk), step):
                        self.wfile.write(chunk[offset : offset + step])
                        self.wfile.flush()
                        if server.stopped.wait(step / bytes_per_s):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (killed, timed out): nothing to do

            def _plain(self, status: int, text: bytes, location: str | None = None) -> None:
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(text)

        return Handler


def frame_pattern(index: int, height: int, width: int) -> np.ndarray:
    """A frame whose content tells its index: 8 bars, bar k bright when bit k of the index is set."""
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    bar = max(1, width // 8)
    for bit in range(8):
        if index >> bit & 1:
            image[:, bit * bar : (bit + 1) * bar] = 215
    image[: height // 4, :, 1] = (index * 37) % 256  # a band that changes every frame
    return image


def make_video(
    path: Path,
    seconds: float = 6.0,
    fps: int = 25,
    size: tuple[int, int] = (96, 128),
    gop: int = 25,
    codec: str = "libx264",
    noise: int = 0,
) -> Path:
    """Write a short video with PyAV whose frame i shows ``frame_pattern(i)``; keyframes every ``gop`` frames.

    ``noise`` adds uniform noise of that amplitude to the top quarter (a bigger
    file, for throttled downloads; the bit bars stay readable).
    """
    rng = np.random.default_rng(0)
    height, width = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"g": str(gop)}
    if codec == "libx264":
        options |= {"preset": "ultrafast", "crf": "18", "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}

    def frames() -> Iterator[np.ndarray]:
        for index in range(round(seconds * fps)):
            image = frame_pattern(index, height, width)
            if noise:
                band = image[: height // 4].astype(np.int16) + rng.integers(-noise, noise + 1, (height // 4, width, 3))
                image[: height // 4] = np.clip(band, 0, 255).astype(np.uint8)
            yield image

    return write_video(path, frames(), fps, codec=codec, options=options)
