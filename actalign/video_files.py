"""Write frames to a video file with PyAV: the one writer of the demo data, the tests and the benchmarks."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path

import av
import numpy as np

REPRODUCIBLE_H264: Mapping[str, str] = {"preset": "veryfast", "threads": "1"}
"""Single-threaded x264: the same frames give the same bytes (the demo's videos are keyed by their content)."""


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: int,
    *,
    codec: str = "libx264",
    options: Mapping[str, str] = REPRODUCIBLE_H264,
    container_format: str | None = None,
    rotation: int = 0,
) -> Path:
    """Encode uint8 RGB frames (H x W x 3, one size) as yuv420p, frame i at i / ``fps`` seconds.

    ``frames`` may be lazy (a long video need not fit in memory). ``options``
    are the codec's (e.g. ``g`` for the keyframe interval); ``container_format``
    overrides the format the suffix implies; ``rotation`` (degrees
    counter-clockwise) is stored as the display matrix, as phones do.
    """
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps, options=dict(options))
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)
