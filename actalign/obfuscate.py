"""ActionAtlas text obfuscation: blur the regions where on-screen text names the action.

ActionAtlas ships, per question, the text regions to hide (``frames_to_blur``:
1-based frame number within the extracted segment -> polygons in that
segment's pixel coordinates; see ``actalign.actionatlas``). The official
script (``action_atlas/obfuscate_text.py``, function ``obfuscate_text_areas``)
does, for every polygon of a frame::

    x_min, y_min, x_max, y_max = <bounding box of the polygon's vertices>
    roi = frame[y_min:y_max, x_min:x_max]
    frame[y_min:y_max, x_min:x_max] = cv2.GaussianBlur(roi, (111, 111), 0)

so this module reproduces exactly that by default (``mode="box"``):

* the region is the polygon's axis-aligned bounding box, end-exclusive as in
  the slice above (clipped to the frame; the official code would wrap around on
  negative coordinates, we clip);
* the kernel is 111 x 111 with sigma 0, which OpenCV turns into
  ``sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8 = 17.0`` pixels;
* the region is blurred *on its own* (a numpy view handed to OpenCV from Python
  does not see its parent image), so its border is extended by reflection
  (OpenCV's BORDER_REFLECT_101, numpy's ``"reflect"``).

The blur is a separable Gaussian in float32 with round-to-nearest: identical
to ``cv2.GaussianBlur`` on a float32 image (checked once against
opencv-python-headless, not a dependency). OpenCV's uint8 path, which the
official script used, approximates the kernel in fixed point and differs from
its own float result by up to 4 grey levels (1.5 on average inside the box).
``mode="polygon"`` blurs the same box but keeps the result only inside the
polygon itself (PIL ``ImageDraw.polygon`` mask).

Coordinates and scaling
-----------------------
Polygons are in the pixel coordinates of ``source_size = (H0, W0)``, the frame
size ActionAtlas annotated (its segments keep the <= 720p YouTube download's
size). A frame of another size gets the polygons scaled by ``(W/W0, H/H0)``
and the Gaussian's radius and sigma scaled by the same factors per axis, so
obfuscating a resized frame approximates "obfuscate, then resize". Applying it
to the full-resolution source frame before resizing is exact and preferred;
see ``make_transform`` for the hook that needs.

Frame numbers
-------------
ActionAtlas' frame ``n`` is the n-th frame (1-based) of the segment cut by
ffmpeg from ``start = round(start_timestamp, 1)``: frame 1 is the first source
frame displayed at or after ``start``. ``segment_frame_number`` maps a source
frame's presentation time to that number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

OFFICIAL_KERNEL = 111
"""cv2.GaussianBlur(roi, (111, 111), 0) in ActionAtlas' obfuscate_text.py."""

Polygon = Sequence[tuple[float, float]]


def opencv_sigma(kernel: int) -> float:
    """The sigma OpenCV derives from a kernel size when sigma is 0 (17.0 for 111)."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def _gaussian_taps(radius: int, sigma: float) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x**2) / (2.0 * sigma**2))
    return (taps / taps.sum()).astype(np.float32)


def _blur_axis(image: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """Convolve along one axis with reflect-101 borders (numpy 'reflect'); repeated reflection for tiny regions."""
    radius = len(taps) // 2
    n = image.shape[axis]
    if radius == 0 or n == 0:
        return image
    if n == 1:
        return image  # a single row/column: reflect-101 repeats it, so the blur is the identity
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(image, pad, mode="reflect")
    out = np.zeros_like(image)
    window = [slice(None)] * image.ndim
    scratch = np.empty_like(image)
    for i, weight in enumerate(taps):
        window[axis] = slice(i, i + n)
        np.multiply(padded[tuple(window)], weight, out=scratch)
        out += scratch
    return out


def _box(polygon: Polygon, scale_x: float, scale_y: float, height: int, width: int) -> tuple[int, int, int, int] | None:
    xs = [float(p[0]) * scale_x for p in polygon]
    ys = [float(p[1]) * scale_y for p in polygon]
    x0, x1 = max(0, round(min(xs))), min(width, round(max(xs)))
    y0, y1 = max(0, round(min(ys))), min(height, round(max(ys)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def obfuscate(
    frame: np.ndarray,
    polygons: Iterable[Polygon],
    source_size: tuple[int, int],
    kernel: int = OFFICIAL_KERNEL,
    mode: str = "box",
) -> np.ndarray:
    """Blur the polygons' regions of one (H, W, 3) uint8 frame; returns a new array (see the module docstring)."""
    if frame.ndim != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, C) uint8 frame, got {frame.shape} {frame.dtype}")
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be a positive odd number of pixels, got {kernel}")
    if mode not in ("box", "polygon"):
        raise ValueError(f"mode must be 'box' (as ActionAtlas) or 'polygon', got {mode!r}")
    src_h, src_w = source_size
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f"source_size must be two positive integers (H, W), got {source_size!r}")
    height, width = frame.shape[:2]
    scale_x, scale_y = width / src_w, height / src_h
    sigma = opencv_sigma(kernel)
    taps_x = _gaussian_taps(round(kernel // 2 * scale_x), max(sigma * scale_x, 1e-6))
    taps_y = _gaussian_taps(round(kernel // 2 * scale_y), max(sigma * scale_y, 1e-6))

    out = frame
    for polygon in polygons:
        polygon = [(float(x), float(y)) for x, y in polygon]
        if not polygon:
            continue
        box = _box(polygon, scale_x, scale_y, height, width)
        if box is None:
            continue
        if out is frame:
            out = frame.copy()
        x0, y0, x1, y1 = box
        roi = out[y0:y1, x0:x1].astype(np.float32)
        blurred = _blur_axis(_blur_axis(roi, taps_y, axis=0), taps_x, axis=1)
        blurred = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
        if mode == "box":
            out[y0:y1, x0:x1] = blurred
        else:
            mask_image = Image.new("L", (x1 - x0, y1 - y0), 0)
            ImageDraw.Draw(mask_image).polygon(
                [(x * scale_x - x0, y * scale_y - y0) for x, y in polygon], fill=255, outline=255
            )
            mask = np.asarray(mask_image) > 0
            out[y0:y1, x0:x1][mask] = blurred[mask]
    return out


def obfuscate_frames(
    frames: np.ndarray,
    frame_numbers: Sequence[int],
    obfuscation: Mapping[int, Sequence[Polygon]],
    source_size: tuple[int, int],
    kernel: int = OFFICIAL_KERNEL,
    mode: str = "box",
) -> np.ndarray:
    """Obfuscate each of N frames (N, H, W, 3) with the polygons of its 1-based segment frame number.

    ``frame_numbers[i]`` is the ActionAtlas frame number (1-based, within the
    segment) of the source frame that ``frames[i]`` was sampled from. The input
    is never modified; it is returned as is when no frame has polygons.
    """
    if len(frame_numbers) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(frame_numbers)} frame numbers")
    out = frames
    for i, number in enumerate(frame_numbers):
        polygons = obfuscation.get(int(number))
        if not polygons:
            continue
        if out is frames:
            out = frames.copy()
        out[i] = obfuscate(frames[i], polygons, source_size, kernel, mode)
    return out


def segment_frame_number(frame_time_s: float, segment_start_s: float, fps: float) -> int:
    """ActionAtlas' 1-based frame number of the source frame shown from ``frame_time_s``.

    Frame 1 is the first frame at or after ``segment_start_s`` (both times in
    the same file's seconds); frames before it map to 1. Constant frame rate is
    assumed (true of ActionAtlas' re-encoded segments); a tolerance of 1/1000
    of a frame absorbs float rounding of timestamps that fall on the start.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return max(1, math.floor((frame_time_s - segment_start_s) * fps + 1e-3) + 1)


@dataclass(frozen=True)
class FrameObfuscator:
    """The decoder hook for one segment: ``wants(t)`` says whether the source frame shown from ``t`` has
    polygons (so the decoder converts only those frames at full resolution), ``obfuscator(image, t)``
    blurs them. Times are in the decoded file's seconds, like ``sample_frames``' start_s."""

    obfuscation: Mapping[int, Sequence[Polygon]]
    segment_start_s: float  # the question's start in the decoded file (Downloaded.offset_s)
    fps: float  # the source frame rate (SampledFrames.source_fps)
    source_size: tuple[int, int] | None = None  # the size the polygons were drawn on; None: the image's own
    kernel: int = OFFICIAL_KERNEL
    mode: str = "box"

    def frame_number(self, frame_time_s: float) -> int:
        return segment_frame_number(frame_time_s, self.segment_start_s, self.fps)

    def wants(self, frame_time_s: float) -> bool:
        return bool(self.obfuscation.get(self.frame_number(frame_time_s)))

    def __call__(self, image: np.ndarray, frame_time_s: float) -> np.ndarray:
        polygons = self.obfuscation.get(self.frame_number(frame_time_s))
        if not polygons:
            return image
        return obfuscate(image, polygons, self.source_size or image.shape[:2], self.kernel, self.mode)


def make_transform(
    obfuscation: Mapping[int, Sequence[Polygon]],
    segment_start_s: float,
    fps: float,
    source_size: tuple[int, int] | None = None,
    kernel: int = OFFICIAL_KERNEL,
    mode: str = "box",
) -> FrameObfuscator:
    """A per-frame hook for the decoder: ``hook(full_resolution_rgb, frame_time_s) -> rgb`` and ``hook.wants(t)``.

    Meant to be called by ``sample_frames`` on each *sampled* source frame at
    full resolution, before resizing (exact obfuscation), and only where
    ``wants`` is true. ``segment_start_s`` is the question's start in the
    decoded file's time (``Downloaded.offset_s``) and ``fps`` the source frame
    rate. ``source_size`` is the size the polygons were drawn on; None means
    the decoded frame's own size.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return FrameObfuscator(obfuscation, float(segment_start_s), float(fps), source_size, kernel, mode)
