"""Segment decoding: one seek then sequential decode (this project) versus decoding from frame 0.

    python -m benchmarks.bench_decode [--minutes 10] [--segment 5]

Writes a long generated video (keyframe every 2 s, like most uploads), then
samples a segment from its middle two ways in the same run: ``sample_frames``
(one seek to the segment's start, decode forward) and the reference scripts'
way (decode every frame from the start, keep those in the segment). Prints
both times and their ratio, and checks both give the same frames.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--segment", type=float, default=5.0, help="segment length in seconds")
    parser.add_argument("--fps", type=float, default=4.0)
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


if __name__ == "__main__":
    main()
