"""Decoding: this project's ``sample_frames`` against the reference scripts' way, in the same run.

    python -m benchmarks.bench_decode [--minutes 10] [--segment 5] [--small 100]

1. A segment of a long video: writes a long generated video (keyframe every 2 s,
   like most uploads), then samples a segment from its middle two ways:
   ``sample_frames`` (one seek to the segment's start, decode forward) and the
   reference scripts' way (decode every frame from the start, keep those in the segment).
2. Many short small videos (3 s, 128x128, 12 fps, as the demo's), whole, to 32x32 and
   224x224: ``sample_frames`` (one scaling context per video) against the same decode
   converting each frame with its own ``to_ndarray`` (a scaling context per frame).

Prints the times and their ratios, and checks both ways give the same frames.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from actalign.frames import sample_frames
from actalign.video_files import write_video


def write_long_video(path: Path, minutes: float, fps: int = 25, size: tuple[int, int] = (360, 640)) -> Path:
    height, width = size
    gradient = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]

    def frames() -> Iterator[np.ndarray]:
        for index in range(int(minutes * 60 * fps)):
            image = np.broadcast_to(gradient, (height, width, 3)).copy()
            image[:, (index * 4) % width] = 255  # a moving line: every frame differs
            yield image

    return write_video(path, frames(), fps, options={"preset": "ultrafast", "g": str(2 * fps), "bf": "0"})


def from_frame_zero(path: Path, fps: float, size: tuple[int, int], start: float, end: float) -> np.ndarray:
    """The reference scripts' way: decode everything from frame 0, keep what falls in the segment."""
    images, instants = [], iter(start + i / fps for i in range(int(np.ceil((end - start) * fps))))
    target = next(instants)
    previous = None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            while previous is not None and frame.time > target:
                images.append(previous.to_ndarray(format="rgb24", width=size[1], height=size[0]))
                target = next(instants, None)
                if target is None:
                    return np.stack(images)
            previous = frame
    return np.stack(images)


def write_small_videos(folder: Path, count: int) -> list[Path]:
    videos = []
    for index in range(count):
        frames = []
        for k in range(36):  # a block moving over a flat background, like the demo's shapes
            image = np.full((128, 128, 3), 40 + index % 100, dtype=np.uint8)
            image[32:64, 3 * k : 3 * k + 32] = (200, 80 + k, 40)
            frames.append(image)
        videos.append(write_video(folder / f"small-{index:04d}.mp4", frames, 12))
    return videos


def small_videos(folder: Path, count: int, fps: float) -> None:
    started = time.perf_counter()
    videos = write_small_videos(folder, count)
    print(f"\nwrote {count} 3-second 128x128 videos in {time.perf_counter() - started:.1f} s")
    for size in ((32, 32), (224, 224)):
        sample_frames(videos[0], fps, size)  # warm-up: the codec's first open
        started = time.perf_counter()
        ours = [sample_frames(video, fps, size).frames for video in videos]
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        reference = [from_frame_zero(video, fps, size, 0.0, 3.0) for video in videos]
        reference_s = time.perf_counter() - started
        same = all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(ours, reference))
        print(f"  to {size[0]}x{size[1]}: sample_frames {ours_s:.3f} s, a context per frame {reference_s:.3f} s, "
              f"ratio {reference_s / ours_s:.2f}x   identical frames: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--segment", type=float, default=5.0, help="segment length in seconds")
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--small", type=int, default=100, help="short small videos to decode whole (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        video = write_long_video(Path(folder) / "long.mp4", args.minutes)
        print(f"wrote a {args.minutes:g}-minute 640x360 video in {time.perf_counter() - started:.1f} s")
        start = args.minutes * 60 / 2
        end = start + args.segment
        started = time.perf_counter()
        ours = sample_frames(video, args.fps, (224, 224), start, end).frames
        seek_s = time.perf_counter() - started
        started = time.perf_counter()
        reference = from_frame_zero(video, args.fps, (224, 224), start, end)
        zero_s = time.perf_counter() - started
    same = ours.shape == reference.shape and bool(np.array_equal(ours, reference))
    print(f"segment [{start:g}, {end:g}) s at {args.fps:g} fps: {len(ours)} frames")
    print(f"  seek + decode forward : {seek_s:8.3f} s")
    print(f"  decode from frame 0   : {zero_s:8.3f} s")
    print(f"  ratio (from 0 / seek) : {zero_s / seek_s:8.1f}x   identical frames: {same}")
    if args.small > 0:
        with tempfile.TemporaryDirectory() as folder:
            small_videos(Path(folder), args.small, args.fps)


if __name__ == "__main__":
    main()
