"""Download throughput vs the concurrency limit of ``fetch_many``, against a loopback HTTP server.

    python -m benchmarks.bench_download [--downloads 24] [--delay 0.1] [--levels 1 4 16] [--segments]

Every level fetches the same set of distinct URLs (generated videos, real yt-dlp,
generic extractor) into its own empty cache. The server waits ``--delay``
seconds before answering each request, standing in for network latency, so
that concurrency matters; yt-dlp makes two requests per whole-file download.
``--segments`` fetches a 2 s segment of each through ffmpeg instead. Rates are
printed with their ratio to concurrency 1, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from actalign.download import Downloaded, DownloadOptions, FetchRequest, fetch_many

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from http_fixtures import Behaviour, LoopbackServer, make_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--downloads", type=int, default=24, help="distinct URLs fetched at each level")
    parser.add_argument("--delay", type=float, default=0.1, help="server delay per request, seconds")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16], help="concurrency limits to measure")
    parser.add_argument("--segments", action="store_true", help="fetch a 2 s segment (ffmpeg) instead of the whole file")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    video = make_video(work / "clip.mp4", seconds=6.0, fps=25, size=(144, 192), gop=25, noise=30)
    options = DownloadOptions(backoff_s=0.05, socket_timeout_s=30.0)
    with LoopbackServer(max_lifetime_s=600) as server:
        urls = [server.add(f"/v{i:03d}.mp4", video, Behaviour(delay_per_request_s=args.delay)) for i in range(args.downloads)]
        segment = (2.0, 4.0) if args.segments else (None, None)
        requests = [FetchRequest(url, *segment) for url in urls]
        print(
            f"{args.downloads} downloads of {video.stat().st_size / 1024:.0f} KiB "
            f"({'2 s segments via ffmpeg' if args.segments else 'whole files'}), "
            f"server delay {args.delay * 1000:.0f} ms per request, {len(os.sched_getaffinity(0))} cores"
        )
        print(f"{'concurrency':>11} {'seconds':>8} {'downloads/s':>12} {'vs 1':>6}")
        base_rate = None
        for level in args.levels:
            cache = work / f"cache-{level}"
            started = time.perf_counter()
            results = fetch_many(requests, cache, options, concurrency=level)
            elapsed = time.perf_counter() - started
            failed = [r for r in results if not isinstance(r, Downloaded)]
            if failed:
                raise SystemExit(f"concurrency {level}: {len(failed)} downloads failed, e.g. {failed[0]}")
            rate = len(results) / elapsed
            base_rate = base_rate or (rate if level == args.levels[0] else None)
            ratio = f"{rate / base_rate:6.2f}" if base_rate else "     -"
            print(f"{level:>11} {elapsed:8.2f} {rate:12.2f} {ratio}")
        print(f"(ratios are to concurrency {args.levels[0]}, measured in this run)")


if __name__ == "__main__":
    main()
