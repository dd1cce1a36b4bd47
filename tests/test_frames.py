"""actalign.frames: sample counts on real clips, exact frame identity on generated videos, errors."""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from actalign.errors import InputError, SegmentOutOfRangeError, VideoDecodeError, VideoNotFoundError
from actalign.frames import DECODE_STATS, iter_sampled_frames, sample_frames, video_duration
from actalign.video_files import write_video

CLIPS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "clips"
NO_CLIPS = f"real clips not found at {CLIPS_DIR} (a fresh clone has no ../shared/clips)"


def _clip_params() -> list:
    if not (CLIPS_DIR / "MANIFEST.tsv").is_file():
        return [pytest.param("<none>", marks=pytest.mark.skip(reason=NO_CLIPS))]
    with open(CLIPS_DIR / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        return [row["file"] for row in csv.DictReader(handle, delimiter="\t")]


def _clip(name: str) -> Path:
    path = CLIPS_DIR / name
    if not path.is_file():
        pytest.skip(NO_CLIPS if not CLIPS_DIR.is_dir() else f"clip {name} missing from {CLIPS_DIR}")
    return path


# --- real clips -----------------------------------------------------------


@pytest.mark.parametrize("name", _clip_params())
def test_real_clip_sample_counts_and_times(name: str) -> None:
    """Exactly ceil(D * fps) samples: the last frame is displayed until the end, so no +-1 slack."""
    path = _clip(name)
    duration = video_duration(path)
    assert duration > 0
    for fps in (2.0, 5.0):
        sampled = sample_frames(path, fps=fps)
        n = math.ceil(duration * fps)
        assert sampled.frames.shape == (n, 224, 224, 3), fps
        assert sampled.frames.dtype == np.uint8
        assert sampled.times_s.dtype == np.float64 and sampled.times_s.shape == (n,)
        assert sampled.times_s[0] == 0.0
        assert np.all(np.diff(sampled.times_s) > 0)
        assert sampled.times_s[-1] < duration
        assert sampled.duration_s == pytest.approx(duration)
        assert sampled.source_fps > 0
    # The decode is real: images have content (std >= 39 on these clips) and change over
    # time (some frame differs from the first by >= 13 grey levels on average).
    assert sampled.frames.std() > 20
    assert np.abs(sampled.frames.astype(np.int16) - sampled.frames[0]).mean(axis=(1, 2, 3)).max() > 5


def _threads_while_decoding(path: Path, decoder_threads: int | None) -> tuple[int, list[np.ndarray]]:
    """Threads this process gained once the decoder is open, and the sampled frames."""
    before = len(os.listdir("/proc/self/task"))
    with iter_sampled_frames(path, 5.0, (64, 64), decoder_threads=decoder_threads) as frames:
        first = [next(frames)[1].copy()]
        started = len(os.listdir("/proc/self/task")) - before
        return started, first + [image.copy() for _, image in frames]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
@pytest.mark.parametrize("name", ["arm_wrestling.mp4", "making_cake.mp4"])
def test_decoder_threads_reach_ffmpeg_and_keep_the_frames(name: str) -> None:
    """The thread budget gives each decoder side by side its share of the cores: fewer FFmpeg threads, the same frames."""
    path = _clip(name)
    one, by_one = _threads_while_decoding(path, 1)
    two, by_two = _threads_while_decoding(path, 2)
    _, by_ffmpeg = _threads_while_decoding(path, None)
    assert one < two
    assert len(by_one) == len(by_two) == len(by_ffmpeg) > 10
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(by_one, by_two, by_ffmpeg))
    with pytest.raises(InputError, match="decoder_threads must be at least 1"):
        iter_sampled_frames(path, decoder_threads=0)


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [("arm_wrestling.mp4", 0.5, 1.5), ("making_cake.mp4", 2.5, 3.5)],  # making_cake: keyframe at 2.33 s
)
def test_real_clip_segment_matches_whole_video(name: str, start: float, end: float) -> None:
    """A segment gives the same frames as sampling the whole video at the same instants (fps 4: exact floats)."""
    path = _clip(name)
    DECODE_STATS.reset()
    segment = sample_frames(path, fps=4.0, start_s=start, end_s=end)
    decoded_for_segment = DECODE_STATS.frames
    whole = sample_frames(path, fps=4.0)
    first = int(start * 4)
    assert len(segment.frames) == math.ceil((end - start) * 4) == 4
    np.testing.assert_array_equal(segment.times_s, [0.0, 0.25, 0.5, 0.75])
    assert segment.duration_s == pytest.approx(end - start)
    np.testing.assert_array_equal(segment.frames, whole.frames[first : first + 4])
    if start > 2:  # one seek to the keyframe at 2.33 s, not a decode from frame 0 (2.5 s * 30 fps)
        assert decoded_for_segment < 2.5 * 30


# --- generated videos -------------------------------------------------------

NATIVE_FPS = 10
N_FRAMES = 20  # 2.0 s
GOP = 5  # keyframes at frames 0, 5, 10, 15 so that a seek lands mid-video


def _index_of(image: np.ndarray) -> int:
    """Recover the frame index encoded as the grey level 10 * (index + 1)."""
    return int(round(float(image.mean()) / 10)) - 1


LOSSLESS = {"preset": "ultrafast", "qp": "0", "g": str(GOP), "bf": "0"}  # grey levels survive exactly


@pytest.fixture(scope="module")
def indexed_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 10 fps; frame k is uniformly grey 10 * (k + 1)."""
    frames = [np.full((32, 48, 3), 10 * (k + 1), dtype=np.uint8) for k in range(N_FRAMES)]
    return write_video(tmp_path_factory.mktemp("videos") / "indexed.mp4", frames, NATIVE_FPS, options=LOSSLESS)


def _displayed(t: Fraction) -> int:
    """Index of the frame displayed at t seconds (frame k shows from k / NATIVE_FPS)."""
    return min(math.floor(t * NATIVE_FPS), N_FRAMES - 1)


@pytest.mark.parametrize(
    ("fps", "start", "end"),
    [
        (3, None, None),  # below the native rate
        (4, Fraction(14, 25), Fraction(73, 50)),  # a segment in the middle: 0.56 s to 1.46 s
        (25, None, None),  # above the native rate: frames repeat
    ],
)
def test_sampled_frame_is_the_displayed_frame(
    indexed_video: Path, fps: int, start: Fraction | None, end: Fraction | None
) -> None:
    sampled = sample_frames(
        indexed_video,
        fps=fps,
        size=(16, 16),
        start_s=None if start is None else float(start),
        end_s=None if end is None else float(end),
    )
    first, last = start or Fraction(0), end or Fraction(N_FRAMES, NATIVE_FPS)
    n = math.ceil((last - first) * fps)
    expected = [_displayed(first + Fraction(i, fps)) for i in range(n)]
    assert [_index_of(image) for image in sampled.frames] == expected
    np.testing.assert_allclose(sampled.times_s, np.arange(n) / fps)
    assert sampled.source_fps == NATIVE_FPS
    assert sampled.duration_s == pytest.approx(float(last - first))


def test_segment_decodes_from_the_keyframe_not_from_frame_0(indexed_video: Path) -> None:
    DECODE_STATS.reset()
    sampled = sample_frames(indexed_video, fps=4, start_s=1.05, end_s=1.2)
    assert [_index_of(image) for image in sampled.frames] == [10]
    # Seek lands on the keyframe 10; decoding stops at the first frame past the last instant (11).
    assert DECODE_STATS.videos == 1
    assert DECODE_STATS.frames == 2


def test_end_beyond_the_video_is_clipped(indexed_video: Path) -> None:
    sampled = sample_frames(indexed_video, fps=NATIVE_FPS, start_s=1.5, end_s=60.0)
    assert [_index_of(image) for image in sampled.frames] == list(range(15, 20))
    assert sampled.duration_s == pytest.approx(0.5)


def test_decode_stats_count_frames_and_are_thread_safe(indexed_video: Path) -> None:
    DECODE_STATS.reset()
    sample_frames(indexed_video, fps=NATIVE_FPS)
    assert (DECODE_STATS.videos, DECODE_STATS.frames) == (1, N_FRAMES)
    video_duration(indexed_video)  # metadata only: no decoding
    assert (DECODE_STATS.videos, DECODE_STATS.frames) == (1, N_FRAMES)
    DECODE_STATS.reset()
    # At 2 fps the last instant is 1.5 s: decoding stops at frame 16, the first one after it.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: sample_frames(indexed_video, fps=2), range(8)))
    assert (DECODE_STATS.videos, DECODE_STATS.frames) == (8, 8 * 17)
    DECODE_STATS.reset()
    assert (DECODE_STATS.videos, DECODE_STATS.frames) == (0, 0)


@pytest.mark.parametrize(
    ("suffix", "container_format"),
    [
        (".h264", "h264"),  # no timestamps and no duration at all: decode to find the end
        (".ts", "mpegts"),  # the stream starts at 0.2 s (times are relative to the stream start)
    ],
)
def test_streams_without_durations_or_with_an_offset(tmp_path: Path, suffix: str, container_format: str) -> None:
    frames = [np.full((32, 32, 3), 10 * (index + 1), np.uint8) for index in range(N_FRAMES)]
    path = write_video(tmp_path / f"video{suffix}", frames, NATIVE_FPS, options={"preset": "ultrafast", "qp": "0"}, container_format=container_format)
    assert video_duration(path) == pytest.approx(N_FRAMES / NATIVE_FPS)
    sampled = sample_frames(path, fps=NATIVE_FPS, size=(8, 8))
    assert [_index_of(image) for image in sampled.frames] == list(range(N_FRAMES))


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_display_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    """The display matrix rotates the stored image `rotation` degrees counter-clockwise (np.rot90's sense)."""
    upright = np.zeros((64, 32, 3), dtype=np.uint8)  # portrait, four distinct quarters
    upright[:32, :16], upright[:32, 16:] = (255, 0, 0), (0, 255, 0)
    upright[32:, :16], upright[32:, 16:] = (0, 0, 255), (255, 255, 255)
    stored = np.ascontiguousarray(np.rot90(upright, -rotation // 90))
    path = write_video(tmp_path / "rotated.mp4", [stored] * 3, NATIVE_FPS, options=LOSSLESS, rotation=rotation)
    sampled = sample_frames(path, fps=NATIVE_FPS, size=(32, 16))
    assert sampled.frames.shape == (3, 32, 16, 3)
    image = sampled.frames[0].astype(int)
    quarters = [image[:16, :8], image[:16, 8:], image[16:, :8], image[16:, 8:]]
    expected = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    for quarter, colour in zip(quarters, expected):
        np.testing.assert_allclose(quarter[2:-2, 2:-2].mean(axis=(0, 1)), colour, atol=40)


@pytest.mark.parametrize("rotation", [0, 90])
def test_centre_crop_keeps_the_aspect_and_the_centre(tmp_path: Path, rotation: int) -> None:
    """CLIP's frames: resized to cover the model's square and cropped at its centre, not stretched into it."""
    upright = np.zeros((32, 64, 3), dtype=np.uint8)  # landscape: red left quarter, green centre half, blue right quarter
    upright[:, :16], upright[:, 16:48], upright[:, 48:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    stored = np.ascontiguousarray(np.rot90(upright, -rotation // 90))
    path = write_video(tmp_path / "wide.mp4", [stored] * 3, NATIVE_FPS, options=LOSSLESS, rotation=rotation)
    cropped = sample_frames(path, fps=NATIVE_FPS, size=(16, 16), centre_crop=True).frames[0].astype(int)
    stretched = sample_frames(path, fps=NATIVE_FPS, size=(16, 16)).frames[0].astype(int)
    assert cropped.shape == stretched.shape == (16, 16, 3)
    np.testing.assert_allclose(cropped[2:-2, 2:-2].mean(axis=(0, 1)), (0, 255, 0), atol=40)  # only the centre half
    np.testing.assert_allclose(stretched[4:-4, :2].mean(axis=(0, 1)), (255, 0, 0), atol=40)  # stretched: the red edge stays


@pytest.mark.parametrize("name", _clip_params()[:3])
def test_centre_crop_sees_what_clips_image_processor_sees(name: str) -> None:
    """The decoder's resize-and-crop matches CLIP's processor on the full frame (resamplers differ by a few levels)."""
    from transformers import CLIPImageProcessorPil

    path = _clip(name)
    full = sample_frames(path, fps=1.0, size=None).frames[:3]
    assert full.shape[1] != full.shape[2]  # not square: stretching and cropping differ
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, do_rescale=False, do_normalize=False)
    reference = processor(images=list(full), return_tensors="np", input_data_format="channels_last").pixel_values.transpose(0, 2, 3, 1)
    cropped = sample_frames(path, fps=1.0, size=(224, 224), centre_crop=True).frames[:3].astype(float)
    stretched = sample_frames(path, fps=1.0, size=(224, 224)).frames[:3].astype(float)
    assert np.abs(cropped - reference).mean() < 4.0 < np.abs(stretched - reference).mean()


# --- bad input ------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(VideoNotFoundError, match="nowhere.mp4"):
        sample_frames(missing)
    with pytest.raises(VideoNotFoundError, match="nowhere.mp4"):
        video_duration(missing)


def test_text_file_renamed_mp4_is_a_decode_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(VideoDecodeError, match="fake.mp4"):
        sample_frames(fake)
    with pytest.raises(VideoDecodeError, match="fake.mp4"):
        video_duration(fake)


def test_file_without_video_stream_is_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "audio.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError, match="no video stream"):
        sample_frames(path)


@pytest.mark.parametrize(
    ("start", "end"),
    [(2.0, None), (5.0, 6.0), (-0.5, 1.0), (1.0, 1.0), (1.0, 0.5)],
)
def test_bad_segments(indexed_video: Path, start: float, end: float | None) -> None:
    with pytest.raises(SegmentOutOfRangeError, match="indexed.mp4"):
        sample_frames(indexed_video, start_s=start, end_s=end)
