"""actalign.obfuscate: the blurred region checked pixel by pixel, scaling, 1-based frame numbers, on real decoded frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actalign.frames import sample_frames
from actalign.obfuscate import (
    OFFICIAL_KERNEL,
    make_transform,
    obfuscate,
    obfuscate_frames,
    opencv_sigma,
    segment_frame_number,
)


def _text_like(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """High-contrast stripes plus noise: blurring visibly flattens it."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, ::2] = 255  # one-pixel vertical stripes, like thin glyph strokes
    image[::6] = 0
    return np.clip(image.astype(np.int16) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)


def test_official_kernel_and_sigma() -> None:
    assert OFFICIAL_KERNEL == 111
    assert opencv_sigma(111) == pytest.approx(17.0)


def test_box_blurred_inside_unchanged_outside() -> None:
    frame = _text_like()
    polygon = [(40, 30), (100, 30), (100, 70), (40, 70)]  # x 40..100, y 30..70 (end-exclusive as the official slice)
    out = obfuscate(frame, [polygon], source_size=frame.shape[:2])

    inside = np.zeros(frame.shape[:2], dtype=bool)
    inside[30:70, 40:100] = True
    assert out.dtype == np.uint8 and out.shape == frame.shape
    np.testing.assert_array_equal(out[~inside], frame[~inside])  # every pixel outside: untouched
    changed = np.any(out != frame, axis=2)
    assert changed[inside].mean() > 0.95  # nearly every pixel inside changed
    # Blurred, not replaced: the mean stays, the stripes are gone.
    assert abs(out[inside].astype(float).mean() - frame[inside].astype(float).mean()) < 3
    assert out[inside].std() < frame[inside].std() / 10
    assert np.abs(np.diff(out[30:70, 40:100].astype(int), axis=1)).max() <= 4  # smooth across columns
    np.testing.assert_array_equal(frame, _text_like())  # the input is not modified


def test_blur_of_a_constant_region_is_the_identity() -> None:
    frame = np.full((50, 60, 3), 77, dtype=np.uint8)
    out = obfuscate(frame, [[(5, 5), (40, 5), (40, 30), (5, 30)]], source_size=(50, 60))
    np.testing.assert_array_equal(out, frame)


def test_polygon_mode_keeps_outside_of_a_triangle() -> None:
    frame = _text_like()
    triangle = [(20, 20), (120, 20), (20, 100)]
    out = obfuscate(frame, [triangle], source_size=frame.shape[:2], mode="polygon")
    ys, xs = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    strictly_inside = (xs > 22) & (ys > 22) & (0.8 * xs + ys < 114)  # 2 px inside the hypotenuse 0.8 x + y = 116
    outside_box = ~((xs >= 20) & (xs < 120) & (ys >= 20) & (ys < 100))
    beyond_hypotenuse = (0.8 * xs + ys > 118) & ~outside_box
    np.testing.assert_array_equal(out[outside_box], frame[outside_box])
    np.testing.assert_array_equal(out[beyond_hypotenuse], frame[beyond_hypotenuse])  # in the box, outside the polygon
    assert np.any(out != frame, axis=2)[strictly_inside].mean() > 0.95


def test_polygons_are_scaled_from_the_source_size() -> None:
    """A polygon drawn on a 720x1280 source lands on the same relative region of a 180x320 frame."""
    frame = _text_like(180, 320)
    polygon = [(400, 200), (800, 200), (800, 480), (400, 480)]  # source pixels; /4 -> x 100..200, y 50..120
    out = obfuscate(frame, [polygon], source_size=(720, 1280))
    changed = np.any(out != frame, axis=2)
    inside = np.zeros(changed.shape, dtype=bool)
    inside[50:120, 100:200] = True
    assert not changed[~inside].any()
    assert changed[inside].mean() > 0.95


def test_polygon_outside_or_clipped_to_the_frame() -> None:
    frame = _text_like()
    assert obfuscate(frame, [[(500, 500), (600, 500), (600, 600)]], frame.shape[:2]) is frame  # nothing to do
    out = obfuscate(frame, [[(-50, -10), (30, -10), (30, 20), (-50, 20)]], frame.shape[:2])  # clipped, not wrapped
    changed = np.any(out != frame, axis=2)
    assert changed[0:20, 0:30].mean() > 0.9
    assert not changed[20:].any() and not changed[:, 30:].any()


def test_obfuscate_frames_uses_one_based_frame_numbers() -> None:
    frames = np.stack([_text_like(seed=i) for i in range(4)])
    box = [(10, 10), (60, 10), (60, 50), (10, 50)]
    # Frame number 1 is the segment's first frame; numbers 2 and 4 have no polygons.
    result = obfuscate_frames(frames, [1, 2, 3, 4], {1: [box], 3: [box]}, source_size=(120, 160))
    assert np.any(result[0] != frames[0]) and np.any(result[2] != frames[2])
    np.testing.assert_array_equal(result[1], frames[1])
    np.testing.assert_array_equal(result[3], frames[3])
    # Sampling at a lower rate: sampled frames 0, 1 come from source frames 3 and 5.
    result = obfuscate_frames(frames[:2], [3, 5], {1: [box], 3: [box]}, source_size=(120, 160))
    assert np.any(result[0] != frames[0])
    np.testing.assert_array_equal(result[1], frames[1])
    assert obfuscate_frames(frames, [5, 6, 7, 8], {1: [box]}, (120, 160)) is frames
    with pytest.raises(ValueError, match="frame numbers"):
        obfuscate_frames(frames, [1, 2], {}, (120, 160))


def test_segment_frame_number() -> None:
    fps = 30.0
    start = 3.1  # the segment is cut at round(start, 1); 3.1 s is exactly frame 93 at 30 fps
    assert segment_frame_number(93 / fps, start, fps) == 1
    assert segment_frame_number(94 / fps, start, fps) == 2
    assert segment_frame_number(92 / fps, start, fps) == 1  # before the start: clamped to the first frame
    assert segment_frame_number(3.1 + 10 / fps, start, fps) == 11
    assert segment_frame_number(3.1004, 3.1, 25.0) == 1  # float noise at the start


def test_transform_on_a_generated_video(tmp_path: Path) -> None:
    """The decode hook: frame numbers from presentation times, polygons drawn on the source size."""
    from http_fixtures import make_video

    path = make_video(tmp_path / "v.mp4", seconds=2.0, fps=25, size=(96, 128), gop=25)
    sampled = sample_frames(path, fps=5.0, size=(96, 128), start_s=1.0, end_s=2.0)  # instants 1.0, 1.2, ... 1.8
    box = [(0, 48), (128, 48), (128, 96), (0, 96)]  # the lower half, where the bit bars are
    transform = make_transform({1: [box], 6: [box]}, segment_start_s=1.0, fps=25.0)
    times = 1.0 + sampled.times_s  # at fps 5 every sample instant is a source frame's time (25 fps)
    assert [transform.wants(t) for t in times] == [True, True, False, False, False]
    out = np.stack([transform(frame, t) for frame, t in zip(sampled.frames, times)])
    numbers = [segment_frame_number(t, 1.0, 25.0) for t in times]
    assert numbers == [1, 6, 11, 16, 21]
    for i, number in enumerate(numbers):
        changed = np.any(out[i] != sampled.frames[i], axis=2)
        if number in (1, 6):
            assert changed[48:].any() and not changed[:48].any()
        else:
            assert not changed.any()


def test_sample_frames_blurs_the_listed_frames_at_full_resolution(tmp_path: Path) -> None:
    """Through the decoder: the listed 1-based segment frames are blurred inside the box before the
    resize; other frames are exactly what plain sampling gives. A blurred frame is resized from RGB at
    full resolution (not in the YUV conversion), so outside the box it is close to, not equal to, plain."""
    from http_fixtures import make_video

    path = make_video(tmp_path / "v.mp4", seconds=2.0, fps=25, size=(96, 128), gop=25)
    box = [(0, 48), (128, 48), (128, 96), (0, 96)]  # source pixels: the lower half, where the bit bars are
    plain = sample_frames(path, fps=5.0, size=(48, 64), start_s=1.0, end_s=2.0)
    hidden = sample_frames(path, fps=5.0, size=(48, 64), start_s=1.0, end_s=2.0, obfuscation={1: [box], 11: [box]})
    for i, number in enumerate([1, 6, 11, 16, 21]):  # the segment frame number of each sample
        difference = np.abs(plain.frames[i].astype(int) - hidden.frames[i].astype(int))
        if number in (1, 11):
            assert difference[:20].mean() < 5 and difference[28:].mean() > 20
            assert hidden.frames[i][30:].std() < 0.7 * plain.frames[i][30:].std()
        else:
            assert not difference.any()
