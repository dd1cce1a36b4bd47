"""Decode one segment of a video and sample it at a fixed rate.

Semantics
---------
* Sample instants are ``t_i = start + i / fps`` for ``i = 0, 1, ...`` while
  ``t_i < end``, with ``start`` defaulting to 0 and ``end = min(end_s, the
  video's end)``. A video that covers the segment therefore gives exactly
  ``ceil((end - start) * fps)`` samples; an ``end_s`` beyond the video is
  clipped, not an error.
* The frame sampled at ``t_i`` is the frame *displayed* at ``t_i``: the last
  decoded frame whose presentation time is ``<= t_i`` (the first frame when
  ``t_i`` precedes it). A frame stays displayed until the next one, the last
  one until its own duration has passed. An ``fps`` above the native rate
  therefore repeats frames; it never interpolates.
* Times are seconds from the video stream's start; ``SampledFrames.times_s``
  is relative to the segment start (0 = ``start_s``).
* Decoding is sequential after ONE seek to the keyframe at or before the
  segment start, and stops as soon as the segment end has been passed. Only
  sampled frames are converted to RGB, resized in the same swscale call.
* Frame timestamps follow FFmpeg's ``best_effort_timestamp`` rule: use the pts
  unless the pts have gone backwards more often than the dts (AVI files with
  packed MPEG-4 B-frames carry reordered pts; their dts are the display order).
* A display rotation (the display matrix of portrait phone videos, read from
  ``VideoFrame.rotation``) is applied so that the output is upright; the output
  size is ``size`` whatever the rotation.
* ``DECODE_STATS`` counts videos opened for decoding and frames decoded, so
  that callers can prove that a cached re-run decodes nothing.
* ``iter_sampled_frames`` is the one implementation: it yields each sample as
  soon as the decoder reaches it, so a 10-minute video never has all its
  frames in memory; ``sample_frames`` collects it into arrays.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from actalign.errors import (
    InputError,
    SegmentOutOfRangeError,
    VideoDecodeError,
    VideoNotFoundError,
)
from actalign.obfuscate import FrameObfuscator, Polygon, make_transform

DEFAULT_FPS: float = 4.0
"""Sampling rate when the caller gives none.

Fine-grained sports actions (ActionAtlas) last a few seconds and scripts have up
to about 10 steps, so 4 frames/s gives at least 2 frames per step on a 5 s clip
while the embedding cost, linear in the number of frames, stays small.
"""


class _DecodeStats:
    """Thread-safe counters of decoding work done by this module (videos opened for decoding, frames decoded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.videos = 0
        self.frames = 0

    def add(self, videos: int, frames: int) -> None:
        with self._lock:
            self.videos += videos
            self.frames += frames

    def reset(self) -> None:
        with self._lock:
            self.videos = 0
            self.frames = 0


DECODE_STATS = _DecodeStats()

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampledFrames:
    """Frames sampled from one segment, with when they were displayed."""

    frames: np.ndarray  # uint8 (N, H, W, 3) RGB, resized to the requested size
    times_s: np.ndarray  # float64 (N,), segment-relative sample instants
    source_fps: float  # the stream's average frame rate, 0.0 if unknown
    duration_s: float  # duration of the decoded segment in seconds


def video_duration(path: str | Path) -> float:
    """The video's duration in seconds, from metadata when it has any.

    Order: the video stream's duration, Matroska's per-track DURATION tag (the
    container's duration also covers the audio track), the container's
    duration; when none is known, decode to the last frame and add its duration.
    """
    path = _check_readable(path)
    with _open(path) as (container, stream):
        declared = _declared_duration(container, stream)
        if declared is not None:
            return declared
        decoded = 0
        last_end = 0.0
        try:
            for _, _, last_end in _timed_frames(path, container, stream):
                decoded += 1
        finally:
            DECODE_STATS.add(1, decoded)
        return last_end


def sample_frames(
    path: str | Path,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = (224, 224),
    start_s: float | None = None,
    end_s: float | None = None,
    obfuscation: Mapping[int, Sequence[Polygon]] | None = None,
    centre_crop: bool = False,
) -> SampledFrames:
    """Sample the segment [start_s, end_s) of a video at ``fps``; see the module docstring.

    ``obfuscation`` (ActionAtlas): polygons per 1-based frame number of the
    segment, blurred on the full-resolution source frame before it is resized.
    All frames are held in memory: for long videos iterate ``iter_sampled_frames``.
    """
    frames = iter_sampled_frames(path, fps, size, start_s, end_s, obfuscation, centre_crop)
    images = [image for _, image in frames]
    return SampledFrames(
        frames=np.stack(images),
        times_s=np.arange(len(images), dtype=np.float64) / fps,
        source_fps=frames.source_fps,
        duration_s=frames.duration_s,
    )


def iter_sampled_frames(
    path: str | Path,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] | None = (224, 224),
    start_s: float | None = None,
    end_s: float | None = None,
    obfuscation: Mapping[int, Sequence[Polygon]] | None = None,
    centre_crop: bool = False,
    decoder_threads: int | None = None,
) -> SampledFrameIterator:
    """``sample_frames`` one frame at a time: yields ``(t, image)`` as the decoder reaches each instant.

    Same frames, times and errors as ``sample_frames`` (which is built on it),
    but memory does not grow with the segment's length. Arguments are checked
    at once (``InputError``, ``VideoNotFoundError``, a bad segment); the file is
    opened on the first ``next()``, and decode errors surface there or later.
    ``t`` is segment-relative (``i / fps``); ``image`` is uint8 (H, W, 3) RGB
    at ``size`` (``None``: the upright source resolution, unresized): stretched to it, or with
    ``centre_crop`` resized to cover it and cropped at the centre, as CLIP's processor does. The same
    array is yielded again when a frame is sampled at several instants: copy
    it before writing into it. ``source_fps`` is known after the first frame,
    ``duration_s`` once the iterator is exhausted. Close the iterator (or use
    it as a context manager) to release the file early. ``decoder_threads``: FFmpeg's threads for
    this one decoder (None: FFmpeg's choice, one per core); decoders running side by side each take their
    share of the cores (``actalign.threads.ThreadBudget.decoder_threads``), or their threads crowd each other out.
    """
    return SampledFrameIterator(path, fps, size, start_s, end_s, obfuscation, centre_crop, decoder_threads)


class SampledFrameIterator(Iterator[tuple[float, np.ndarray]]):
    """The iterator of ``iter_sampled_frames``; see there."""

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int] | None,
        start_s: float | None,
        end_s: float | None,
        obfuscation: Mapping[int, Sequence[Polygon]] | None,
        centre_crop: bool = False,
        decoder_threads: int | None = None,
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"fps must be a positive number, got {fps!r}")
        if size is not None and not (size[0] > 0 and size[1] > 0):
            raise InputError(f"size must be two positive integers (H, W), got {size!r}")
        if decoder_threads is not None and decoder_threads < 1:
            raise InputError(f"decoder_threads must be at least 1 (or None for FFmpeg's choice), got {decoder_threads!r}")
        self.path = _check_readable(path)
        start = 0.0 if start_s is None else float(start_s)
        if not start >= 0.0:
            raise SegmentOutOfRangeError(f"{self.path}: start_s={start_s} is negative; give a start >= 0")
        if end_s is not None and not end_s > start:
            raise SegmentOutOfRangeError(
                f"{self.path}: end_s={end_s} is not after start_s={start}; give an end later than the start"
            )
        self.fps = float(fps)
        self.size = size
        self.start_s = start
        self.end_s = None if end_s is None else float(end_s)
        self.obfuscation = obfuscation
        self.centre_crop = centre_crop and size is not None
        self.decoder_threads = decoder_threads
        self.source_fps: float | None = None  # the stream's average frame rate (0.0 if unknown), once opened
        self.duration_s: float | None = None  # the decoded segment's duration, once exhausted
        self.count = 0  # samples yielded so far
        self._frames = self._generate()

    def __iter__(self) -> SampledFrameIterator:
        return self

    def __next__(self) -> tuple[float, np.ndarray]:
        return next(self._frames)

    def close(self) -> None:
        """Stop decoding and close the file (also done when the iterator is exhausted or collected)."""
        self._frames.close()

    def __enter__(self) -> SampledFrameIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _generate(self) -> Iterator[tuple[float, np.ndarray]]:
        path, fps, start = self.path, self.fps, self.start_s
        height, width = self.size if self.size is not None else (None, None)
        with _open(path, self.decoder_threads) as (container, stream):
            declared = _declared_duration(container, stream)
            if declared is not None and start >= declared:
                raise SegmentOutOfRangeError(
                    f"{path}: start_s={start} is at or beyond the video's end ({declared:.3f} s); "
                    "fix the segment's start"
                )
            end = min(math.inf if self.end_s is None else self.end_s, math.inf if declared is None else declared)
            source_fps = float(stream.average_rate) if stream.average_rate else 0.0
            self.source_fps = source_fps
            obfuscation = self.obfuscation
            hook = make_transform(obfuscation, segment_start_s=start, fps=source_fps or fps) if obfuscation else None
            if start > 0.0:
                try:
                    container.seek(_to_timestamp(start, stream), stream=stream, backward=True, any_frame=False)
                except av.FFmpegError as exc:
                    raise VideoDecodeError(f"{path}: cannot seek to {start} s ({exc}); re-encode the file") from exc

            reformatter = VideoReformatter()  # one scaling context for the video, not one per frame (see _to_rgb)
            shown: VideoFrame | None = None  # the last frame decoded so far, displayed from its time on
            shown_image: np.ndarray | None = None  # its RGB conversion, made when it is first sampled
            shown_time = shown_end = 0.0
            decoded = 0
            try:
                for frame, frame_time, frame_end in _timed_frames(path, container, stream):
                    decoded += 1
                    if shown is not None:
                        # Sample `shown` at every pending instant before the next frame (or the end).
                        limit = min(frame_time, end)
                        while start + self.count / fps < limit:
                            if shown_image is None:
                                shown_image = _to_rgb(shown, reformatter, height, width, hook, shown_time, self.centre_crop)
                            self.count += 1
                            yield (self.count - 1) / fps, shown_image
                        if start + self.count / fps >= end:
                            break
                    shown, shown_image, shown_time, shown_end = frame, None, frame_time, frame_end
                else:  # stream exhausted: the last frame stays displayed until its end
                    end = min(end, shown_end)
                    while shown is not None and start + self.count / fps < end:
                        if shown_image is None:
                            shown_image = _to_rgb(shown, reformatter, height, width, hook, shown_time, self.centre_crop)
                        self.count += 1
                        yield (self.count - 1) / fps, shown_image
            finally:
                DECODE_STATS.add(1, decoded)

        if not self.count:
            raise SegmentOutOfRangeError(
                f"{path}: start_s={start} is at or beyond the last decodable frame ({shown_end:.3f} s); "
                "fix the segment's start"
            )
        self.duration_s = end - start


def _covering(frame: VideoFrame, height: int, width: int) -> tuple[int, int]:
    """The (height, width) with the upright frame's aspect that covers (height, width), truncated as CLIP's processor does."""
    upright = (frame.width, frame.height) if round(frame.rotation / 90) % 2 else (frame.height, frame.width)
    scale = max(height / upright[0], width / upright[1])
    return max(height, int(upright[0] * scale)), max(width, int(upright[1] * scale))


def _check_readable(path: str | Path) -> Path:
    """Fail early, naming the file, when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise VideoNotFoundError(f"{path}: no such video file; check the path")
    if not os.access(path, os.R_OK):
        raise VideoNotFoundError(f"{path}: the video file is not readable; fix its permissions")
    return path


@contextmanager
def _open(path: Path, threads: int | None = None) -> Iterator[tuple[InputContainer, VideoStream]]:
    """Open the container and its first video stream, mapping PyAV errors to ours; ``threads`` None: FFmpeg's count."""
    try:
        container = av.open(str(path), mode="r")
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise VideoNotFoundError(f"{path}: cannot read the video file ({exc}); check the path") from exc
    except av.FFmpegError as exc:
        raise VideoDecodeError(
            f"{path}: not a readable video container ({exc}); re-encode it, e.g. to H.264 MP4"
        ) from exc
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path}: the file has no video stream; give a video file")
        stream = container.streams.video[0]
        # Frame and slice threads: large H.264 frames decode faster, and the frames are the same.
        stream.thread_type = "AUTO"
        if threads is not None:
            stream.thread_count = threads
        yield container, stream


def _declared_duration(container: InputContainer, stream: VideoStream) -> float | None:
    """The duration the file declares, preferring the video stream's own; None when unknown."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = next((v for k, v in stream.metadata.items() if k.upper() == "DURATION"), "")
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d*)?)", tag.strip())
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _to_timestamp(seconds: float, stream: VideoStream) -> int:
    """Seconds from the stream's start, in the stream's time_base (rounded down)."""
    return (stream.start_time or 0) + math.floor(seconds / stream.time_base)


def _timed_frames(
    path: Path, container: InputContainer, stream: VideoStream
) -> Iterator[tuple[VideoFrame, float, float]]:
    """Decoded frames with their display start and end, in seconds from the stream's start.

    The timestamp is FFmpeg's best_effort_timestamp (not exposed by PyAV): the
    pts unless pts have gone backwards more often than dts; a frame with neither
    (raw H.264) starts where the previous one ended. A decode error after
    some frames ends the stream there (truncated files keep their good part);
    one before any frame is a VideoDecodeError.
    """
    time_base = stream.time_base
    origin = stream.start_time or 0
    # Exact arithmetic in time_base ticks: summing float frame durations drifts.
    default_ticks = 1 / (stream.average_rate * time_base) if stream.average_rate else Fraction(0)
    next_stamp: Fraction | int = origin  # where a frame without timestamps starts
    faulty_pts = faulty_dts = 0
    last_pts: int | None = None
    last_dts: int | None = None
    decoded = 0
    try:
        for frame in container.decode(stream):
            pts, dts = frame.pts, frame.dts
            if dts is not None:
                faulty_dts += last_dts is not None and dts <= last_dts
                last_dts = dts
            if pts is not None:
                faulty_pts += last_pts is not None and pts <= last_pts
                last_pts = pts
            best = pts if pts is not None and (faulty_pts <= faulty_dts or dts is None) else dts
            stamp = next_stamp if best is None else best
            next_stamp = stamp + (frame.duration if frame.duration > 0 else default_ticks)
            decoded += 1
            yield frame, _seconds(stamp - origin, time_base), _seconds(next_stamp - origin, time_base)
    except av.FFmpegError as exc:
        if not decoded:
            raise VideoDecodeError(f"{path}: cannot decode the video ({exc}); re-encode the file") from exc
        log.warning("%s: decoding stopped after %d frames: %s", path, decoded, exc)
    if not decoded:
        raise VideoDecodeError(f"{path}: no frame could be decoded; re-encode or replace the file")


def _seconds(ticks: Fraction | int, time_base: Fraction) -> float:
    """``float(ticks * time_base)``, without a Fraction for whole ticks: an int's true division rounds as Fraction's does."""
    if isinstance(ticks, int):
        return ticks * time_base.numerator / time_base.denominator
    return float(ticks * time_base)


def _to_rgb(
    frame: VideoFrame,
    reformatter: VideoReformatter,
    height: int | None,
    width: int | None,
    hook: FrameObfuscator | None = None,
    frame_time: float = 0.0,
    centre_crop: bool = False,
) -> np.ndarray:
    """Convert and resize in one swscale call, then turn the image upright.

    ``reformatter`` keeps its scaling context while the size and format stay the same: a frame's own
    ``to_ndarray`` makes a new one per frame, which cost ten times the conversion of a small frame
    (about 0.3 ms against 0.03 ms for 128x128 to 32x32), more than decoding it. The pixels are the same.

    A frame the obfuscation hook wants is converted at full resolution, turned
    upright, blurred, and only then resized, so the blur is exact. ``height``
    and ``width`` None: no resize (the upright source resolution). With
    ``centre_crop`` the image keeps its aspect, covers (height, width), and its centre is kept.
    """
    if centre_crop and height is not None and width is not None:
        covered = _to_rgb(frame, reformatter, *_covering(frame, height, width), hook, frame_time)
        top, left = (covered.shape[0] - height) // 2, (covered.shape[1] - width) // 2
        return np.ascontiguousarray(covered[top : top + height, left : left + width])
    quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as the display matrix says
    if hook is not None and hook.wants(frame_time):
        full = frame.to_ndarray(format="rgb24")
        upright = np.ascontiguousarray(np.rot90(full, quarter_turns) if quarter_turns else full)
        blurred = hook(upright, frame_time)
        return VideoFrame.from_ndarray(np.ascontiguousarray(blurred), format="rgb24").to_ndarray(format="rgb24", width=width, height=height)
    if quarter_turns % 2:
        height, width = width, height
    image = reformatter.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()
    return np.rot90(image, quarter_turns) if quarter_turns else image
