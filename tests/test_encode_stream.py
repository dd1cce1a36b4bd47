"""Streaming acquire: same embeddings as a one-video-at-a-time loop, failures stay per video, bounded memory,
streams running at once share one encoder's batches without waiting on each other,
and how far our decoder's preprocessing is from the Hugging Face image processor.

Tiny untrained model throughout: these tests check plumbing and numbers' equality, never accuracy.
"""

from __future__ import annotations

import csv
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from transformers import SiglipImageProcessorPil

from actalign.config import RunConfig
from actalign.encode_stream import EncodedVideo, FailedVideo, FrameSource, StreamStats, decoders_at_once, encode_stream
from actalign.errors import VideoDecodeError
from actalign.frames import DECODE_STATS, iter_sampled_frames, sample_frames
from actalign.manifest import VideoSpec
from actalign.models import Encoder, clear_encoder_cache, load_encoder
from actalign.registry import fetch_identity
from actalign.stages import ACQUIRE
from actalign.storage.embeddings import read_frame_embeddings, read_frame_times
from actalign.storage.workdir import Workdir
from actalign.tasks.acquire import acquire_videos
from actalign.text_cache import TextEmbeddingCache, clear_text_caches, embed_texts_cached
from actalign.video_files import write_video

CLIPS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "clips"
NO_CLIPS = f"real clips not found at {CLIPS_DIR} (a fresh clone has no ../shared/clips)"

FPS = 10.0  # the generated videos' native rate: every frame is sampled once
FRAME_COUNTS = (3, 7, 1, 12, 5)  # 28 frames: no batch size below divides every video


@pytest.fixture(scope="module", autouse=True)
def fresh_encoders():
    clear_encoder_cache()
    yield
    clear_encoder_cache()


def _write_video(path: Path, frames: int, seed: int, size: tuple[int, int] = (40, 56)) -> Path:
    """Noise frames, so that every frame (and so every embedding) differs: order mistakes show."""
    rng = np.random.default_rng(seed)
    images = (rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(frames))
    return write_video(path, images, int(FPS), options={"preset": "ultrafast", "g": "4", "bf": "0"})


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("stream_videos")
    return [_write_video(folder / f"v{i}.mp4", n, seed=i) for i, n in enumerate(FRAME_COUNTS)]


def _sources(paths: list[Path], encoder: Encoder) -> list[FrameSource]:
    return [FrameSource(p.name, partial(iter_sampled_frames, p, FPS, encoder.image_size)) for p in paths]


def _plain(paths: list[Path], encoder: Encoder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The reference: decode a whole video, embed it, next video."""
    out = {}
    for path in paths:
        sampled = sample_frames(path, FPS, encoder.image_size)
        out[path.name] = (sampled.times_s, encoder.embed_images(sampled.frames))
    return out


# --- equality with a plain loop -------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "workers", "queue_frames"), [(1, 2, None), (3, 2, None), (5, 1, 2), (8, 3, 1), (64, 2, None)])
def test_stream_equals_one_video_at_a_time(videos: list[Path], batch_size: int, workers: int, queue_frames: int | None):
    encoder = load_encoder("tiny-random", batch_size=batch_size)
    expected = _plain(videos, encoder)
    stats = StreamStats()
    results = list(encode_stream(encoder, _sources(videos, encoder), decode_workers=workers, queue_frames=queue_frames, stats=stats))
    assert all(isinstance(r, EncodedVideo) for r in results), results
    assert sorted(r.key for r in results) == sorted(expected)
    for result in results:
        times, embeddings = expected[result.key]
        np.testing.assert_array_equal(result.times_s, times)  # same frames, same order
        assert result.embeddings.shape == embeddings.shape and result.embeddings.dtype == np.float32
        np.testing.assert_allclose(result.embeddings, embeddings, atol=1e-5, rtol=0)
        assert result.frames.duration_s == pytest.approx(len(times) / FPS)  # the SampledFrameIterator comes back
    total = sum(FRAME_COUNTS)
    assert stats.frames == stats.encoded_frames == total and stats.videos == len(videos) and stats.failed == 0
    # Batches span videos: all full but the last.
    assert stats.batches == -(-total // batch_size) and stats.full_batches == total // batch_size
    assert stats.max_queued <= stats.queue_frames


def test_results_come_while_later_videos_are_still_undecoded(videos: list[Path]):
    """Streaming, not collect-then-encode: the first video is yielded before the last one is opened."""
    encoder = load_encoder("tiny-random", batch_size=3)
    opened: list[str] = []

    def lazy() -> Iterator[FrameSource]:
        for source in _sources(videos * 3, encoder):
            opened.append(source.key)
            yield source

    seen_at_first_result = None
    for result in encode_stream(encoder, lazy(), decode_workers=1, queue_frames=2):
        if seen_at_first_result is None:
            seen_at_first_result = len(opened)
    assert seen_at_first_result is not None and seen_at_first_result < len(videos) * 3


def test_frames_in_memory_are_bounded_by_the_queue():
    """A 'video' of 600 frames: at no time are more than queue + batch + workers frames alive."""
    encoder = load_encoder("tiny-random", batch_size=4)
    alive: list[weakref.ref] = []
    most = 0

    def long_video() -> Iterator[tuple[float, np.ndarray]]:
        nonlocal most
        rng = np.random.default_rng(0)
        for i in range(600):
            image = rng.integers(0, 256, (*encoder.image_size, 3), dtype=np.uint8)
            alive.append(weakref.ref(image))
            most = max(most, sum(ref() is not None for ref in alive[-64:]))
            yield i / FPS, image
            del image

    stats = StreamStats()
    (result,) = encode_stream(encoder, [FrameSource("long", long_video)], decode_workers=1, queue_frames=3, stats=stats)
    assert result.embeddings.shape == (600, encoder.embed_dim)
    assert most <= 3 + 1 + 1, most  # queued + the one being put + the one just made (batch rows are copies)


# --- failures -------------------------------------------------------------------------


def _breaks_after(path: Path, good: int, encoder: Encoder) -> Iterator[tuple[float, np.ndarray]]:
    for i, item in enumerate(iter_sampled_frames(path, FPS, encoder.image_size)):
        if i == good:
            raise VideoDecodeError(f"{path}: corrupt packet after {good} frames")
        yield item


def test_decode_failure_in_the_middle_of_a_batch_fails_only_that_video(videos: list[Path]):
    encoder = load_encoder("tiny-random", batch_size=4)
    expected = _plain(videos, encoder)
    sources = _sources(videos[:2], encoder)
    sources.insert(1, FrameSource("broken", partial(_breaks_after, videos[3], 2, encoder)))  # 2 of its frames in a batch with others
    sources.append(FrameSource("bad-shape", lambda: iter([(0.0, np.zeros((7, 7, 3), np.uint8))])))
    sources += _sources(videos[2:], encoder)
    stats = StreamStats()
    results = {r.key: r for r in encode_stream(encoder, sources, decode_workers=2, stats=stats)}
    assert isinstance(results["broken"], FailedVideo) and isinstance(results["broken"].error, VideoDecodeError)
    assert isinstance(results["bad-shape"], FailedVideo) and isinstance(results["bad-shape"].error, ValueError)
    for name, (times, embeddings) in expected.items():
        assert isinstance(results[name], EncodedVideo)
        np.testing.assert_array_equal(results[name].times_s, times)
        np.testing.assert_allclose(results[name].embeddings, embeddings, atol=1e-5, rtol=0)
    assert stats.failed == 2 and stats.videos == len(videos)


def test_closing_the_stream_early_stops_the_workers(videos: list[Path]):
    encoder = load_encoder("tiny-random", batch_size=2)
    stream = encode_stream(encoder, _sources(videos * 4, encoder), decode_workers=2, queue_frames=1)
    next(stream)
    stream.close()
    assert not _stream_threads()  # stopped and joined by close()


def test_a_bug_in_the_sources_propagates(videos: list[Path]):
    encoder = load_encoder("tiny-random", batch_size=2)

    def sources() -> Iterator[FrameSource]:
        yield from _sources(videos[:1], encoder)
        raise RuntimeError("manifest iterator bug")

    with pytest.raises(RuntimeError, match="manifest iterator bug"):
        list(encode_stream(encoder, sources()))


# --- several streams over one encoder (shards running at once in one process) ---------


def _stream_threads() -> list[str]:
    """Threads of encode_stream still alive: decode workers and the batcher's service thread."""
    return [t.name for t in threading.enumerate() if t.name.startswith(("decode-", "encode-batcher"))]


def _gated(sources: list[FrameSource], gate: Callable[[], object]) -> list[FrameSource]:
    """The same sources, the first one opening only after ``gate()`` returns: holds the stream in flight."""
    first = sources[0]

    def open_after_gate() -> Iterable[tuple[float, np.ndarray]]:
        gate()
        return first.open()

    return [FrameSource(first.key, open_after_gate), *sources[1:]]


def _in_threads(encoder: Encoder, streams: list[list[FrameSource]], **options) -> tuple[list, list[StreamStats]]:
    """Each list of sources encoded by its own encode_stream in its own thread, as the flow runs shards;
    per stream its results in a list, or the exception it raised."""
    outcomes: list = [None] * len(streams)
    stats = [StreamStats() for _ in streams]

    def run(i: int) -> None:
        try:
            outcomes[i] = list(encode_stream(encoder, streams[i], stats=stats[i], **options))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"stream-{i}") for i in range(len(streams))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a stream hangs"
    return outcomes, stats


def _batch_sizes(monkeypatch: pytest.MonkeyPatch, encoder: Encoder) -> list[int]:
    """Sizes of the batches the encoder runs from now on (the model itself unchanged)."""
    sizes: list[int] = []
    submit = encoder.submit_images

    def counted(frames):
        sizes.append(len(frames))
        return submit(frames)

    monkeypatch.setattr(encoder, "submit_images", counted)
    return sizes


def _assert_same_videos(results: list, reference: dict[str, EncodedVideo], names: list[str]) -> None:
    assert all(isinstance(r, EncodedVideo) for r in results), results
    assert sorted(r.key for r in results) == sorted(names)
    for result in results:
        np.testing.assert_array_equal(result.times_s, reference[result.key].times_s)
        np.testing.assert_allclose(result.embeddings, reference[result.key].embeddings, atol=1e-5, rtol=0)


def test_streams_in_flight_at_once_share_full_batches(videos: list[Path], monkeypatch: pytest.MonkeyPatch):
    encoder = load_encoder("tiny-random", batch_size=3)
    reference = {r.key: r for r in encode_stream(encoder, _sources(videos, encoder))}  # one stream alone
    cuts = [videos, videos[:3], videos[3:]]  # 28, 11 and 17 frames: alone, each would end on a partial batch
    gate = threading.Barrier(len(cuts))  # every stream registered before any can finish
    sizes = _batch_sizes(monkeypatch, encoder)
    outcomes, stats = _in_threads(encoder, [_gated(_sources(cut, encoder), partial(gate.wait, 60)) for cut in cuts], decode_workers=2)
    for cut, results, counted in zip(cuts, outcomes, stats, strict=True):
        _assert_same_videos(results, reference, [p.name for p in cut])
        frames = sum(len(reference[p.name].times_s) for p in cut)
        assert counted.videos == len(cut) and counted.frames == counted.encoded_frames == frames and counted.failed == 0
    total = 2 * sum(FRAME_COUNTS)
    assert sum(sizes) == total
    assert [size for size in sizes if size < 3] == [total % 3]  # one partial batch in all, the very last
    assert sum(s.batches for s in stats) > len(sizes)  # some batches held frames of several streams
    assert not _stream_threads()


def test_streams_in_flight_decode_no_more_videos_at_once_than_the_process_allows(videos: list[Path]):
    """Four streams of two workers: never more videos decoding at once than ``decoders_at_once`` (the
    process's cores, at least one stream's workers), so shards in flight do not crowd each other off the
    cores; every video still comes back whole."""
    encoder = load_encoder("tiny-random", batch_size=4)
    reference = {r.key: r for r in encode_stream(encoder, _sources(videos, encoder))}
    decoding, peak, lock = 0, 0, threading.Lock()

    def counted(source: FrameSource) -> FrameSource:
        def open_counted() -> Iterator[tuple[float, np.ndarray]]:
            frames = source.open()

            def decode() -> Iterator[tuple[float, np.ndarray]]:
                nonlocal decoding, peak
                with lock:
                    decoding += 1
                    peak = max(peak, decoding)
                try:
                    for frame in frames:
                        time.sleep(0.002)  # a decoder's pace: the other workers try to start meanwhile
                        yield frame
                finally:
                    with lock:
                        decoding -= 1

            return decode()

        return FrameSource(source.key, open_counted)

    streams = [[counted(s) for s in _sources(videos, encoder)] for _ in range(4)]
    outcomes, stats = _in_threads(encoder, streams, decode_workers=2)
    for results in outcomes:
        _assert_same_videos(results, reference, [p.name for p in videos])
    assert 2 <= peak <= decoders_at_once(encoder)  # videos did decode side by side, within the limit
    assert not _stream_threads()


def test_a_video_failing_in_one_stream_leaves_the_other_streams_whole(videos: list[Path]):
    encoder = load_encoder("tiny-random", batch_size=4)
    reference = {r.key: r for r in encode_stream(encoder, _sources(videos, encoder))}
    broken = _sources(videos, encoder)
    broken.insert(2, FrameSource("broken", partial(_breaks_after, videos[3], 2, encoder)))  # some of its frames in a batch
    gate = threading.Barrier(2)
    streams = [_gated(broken, partial(gate.wait, 60)), _gated(_sources(videos, encoder), partial(gate.wait, 60))]
    (with_failure, whole), stats = _in_threads(encoder, streams, decode_workers=2)
    _assert_same_videos(whole, reference, [p.name for p in videos])
    failed = [r for r in with_failure if isinstance(r, FailedVideo)]
    assert [(r.key, type(r.error)) for r in failed] == [("broken", VideoDecodeError)]
    _assert_same_videos([r for r in with_failure if r not in failed], reference, [p.name for p in videos])
    assert (stats[0].failed, stats[0].videos, stats[1].failed, stats[1].videos) == (1, len(videos), 0, len(videos))


def test_closing_one_stream_early_leaves_the_other_running(videos: list[Path]):
    encoder = load_encoder("tiny-random", batch_size=2)
    reference = {r.key: r for r in encode_stream(encoder, _sources(videos, encoder))}
    opened, closed = threading.Event(), threading.Event()

    def after_the_close() -> None:
        opened.set()
        closed.wait(60)

    results: list = []
    runner = threading.Thread(target=lambda: results.extend(encode_stream(encoder, _gated(_sources(videos * 2, encoder), after_the_close))))
    runner.start()
    assert opened.wait(60)  # the other stream is registered, and held in flight
    early = encode_stream(encoder, _sources(videos * 4, encoder), decode_workers=2, queue_frames=1)
    next(early)
    early.close()
    closed.set()
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert len(results) == 2 * len(videos)
    _assert_same_videos(results, reference, [p.name for p in videos * 2])
    assert not _stream_threads()


def test_closing_the_stream_a_partial_batch_waits_for_lets_the_others_finish(videos: list[Path]):
    """B's last frame waits in a partial batch for A, whose worker is still opening a video; A's caller closes it:
    B's batch must run then, not wait for news that will never come."""
    encoder = load_encoder("tiny-random", batch_size=2)
    reference = {r.key: r for r in encode_stream(encoder, _sources(videos, encoder))}
    opening = threading.Event()

    def never_opens() -> Iterable[tuple[float, np.ndarray]]:  # a download that the close interrupts
        opening.wait(60)
        return iter(())

    a_sources = [*_sources([videos[0], videos[2]], encoder), FrameSource("slow", never_opens)]  # 3 + 1 frames: full batches
    a = encode_stream(encoder, a_sources, decode_workers=1)
    assert next(a).key == videos[0].name  # A in flight, its worker now waiting in never_opens
    b_stats, b_results = StreamStats(), []
    b_sources = _sources(videos[:3], encoder)  # 11 frames: the last one waits for a frame from A
    runner = threading.Thread(target=lambda: b_results.extend(encode_stream(encoder, b_sources, stats=b_stats)))
    runner.start()
    deadline = time.monotonic() + 60
    while b_stats.encoded_frames < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # B's workers finish
    threading.Timer(0.2, opening.set).start()  # lets A's worker notice the close
    a.close()
    runner.join(timeout=60)
    assert not runner.is_alive(), "B waited for a stream that was closed"
    _assert_same_videos(b_results, reference, [p.name for p in videos[:3]])
    assert not _stream_threads()


def test_a_stream_waiting_on_a_download_holds_back_no_other_streams_last_batch(videos: list[Path]):
    """A's only worker waits for its file (a slow download) and so can still send frames; B's last, partial
    batch runs after FLUSH_AFTER_S without news, not when A's download ends."""
    encoder = load_encoder("tiny-random", batch_size=4)
    reference = {r.key: r for r in encode_stream(encoder, _sources(videos, encoder))}
    downloaded = threading.Event()

    def after_download() -> Iterable[tuple[float, np.ndarray]]:
        downloaded.wait()
        return iter_sampled_frames(videos[0], FPS, encoder.image_size)

    a_results: list = []
    a = threading.Thread(target=lambda: a_results.extend(encode_stream(encoder, [FrameSource("slow", after_download)], decode_workers=1)))
    a.start()
    download_ends = threading.Timer(60, downloaded.set)  # B waiting for it would end only then
    download_ends.start()
    try:
        b_results = list(encode_stream(encoder, _sources(videos[:3], encoder)))  # 11 frames: the last batch is partial
        assert not downloaded.is_set(), "B's last batch waited for A's download"
        _assert_same_videos(b_results, reference, [p.name for p in videos[:3]])
    finally:
        download_ends.cancel()
        downloaded.set()
        a.join(timeout=120)
    assert [r.key for r in a_results] == ["slow"] and not _stream_threads()


def test_the_model_failing_reaches_every_stream_in_flight(videos: list[Path], monkeypatch: pytest.MonkeyPatch):
    encoder = load_encoder("tiny-random", batch_size=2)
    submit = encoder.submit_images
    calls = itertools.count()

    def fails_on_the_third_batch(frames):
        if next(calls) >= 2:
            raise RuntimeError("device lost")
        return submit(frames)

    monkeypatch.setattr(encoder, "submit_images", fails_on_the_third_batch)
    gate = threading.Barrier(3)
    streams = [_gated(_sources(videos * 2, encoder), partial(gate.wait, 60)) for _ in range(3)]
    outcomes, _ = _in_threads(encoder, streams, decode_workers=1)  # one gated worker each: no frames before all are in flight
    assert all(isinstance(o, RuntimeError) and str(o) == "device lost" for o in outcomes), outcomes
    assert not _stream_threads()


def test_a_caller_that_stops_reading_holds_back_no_other_stream(videos: list[Path]):
    """One thread, two streams: while it reads others to their end, the first one's results pile up until its
    worker waits for them to be taken; the others' last, partial batches must not wait for that worker."""
    encoder = load_encoder("tiny-random", batch_size=2)
    reference = {r.key: r for r in encode_stream(encoder, _sources(videos, encoder))}
    results: list = []

    def interleaved() -> None:
        stats = StreamStats()
        paused = encode_stream(encoder, _sources(videos * 4, encoder), decode_workers=1, stats=stats)
        next(paused)
        deadline = time.monotonic() + 60
        while stats.videos < 1 + 1 + encoder.batch_size and time.monotonic() < deadline:  # decode_workers + batch_size untaken
            time.sleep(0.01)
        for _ in range(2):  # 11 frames each: one of the two ends on a partial batch, whatever the paused stream left
            results.extend(encode_stream(encoder, _sources(videos[:3], encoder)))
        paused.close()

    thread = threading.Thread(target=interleaved)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "a partial batch waited for a stream nobody reads"
    _assert_same_videos(results, reference, [p.name for p in videos[:3] * 2])
    assert not _stream_threads()


# --- the acquire stage ----------------------------------------------------------------


def _spec(path: Path) -> VideoSpec:
    return VideoSpec(video_id=path.stem, source=str(path), start_s=None, end_s=None, domain=None, candidates=("a",), label=None)


def test_acquire_stage_streams_writes_and_fails_per_video(videos: list[Path], tmp_path: Path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_text("this is not a video\n")
    truncated = tmp_path / "truncated.mp4"
    whole = _write_video(tmp_path / "whole.mp4", 20, seed=9)
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # an MP4 cut in half: no index
    specs = [_spec(p) for p in (videos[0], corrupt, videos[1], videos[2], truncated, videos[3], videos[4])]
    config = RunConfig(videos=tmp_path, classes=tmp_path / "classes.yaml", workdir=tmp_path / "work", model="tiny-random", batch_size=3, fps=FPS)
    workdir = Workdir.open(tmp_path / "work")

    DECODE_STATS.reset()
    model = fetch_identity(config)
    result = acquire_videos(workdir, "run-1", "00000", specs, config, model)
    assert result.encoder is not None and result.encoder["fingerprint"] == model.fingerprint
    assert DECODE_STATS.frames >= sum(FRAME_COUNTS)
    assert result.failed == 2 and result.reused == 0 and result.downloaded == 0
    assert result.decoded_frames == result.encoded_frames == sum(FRAME_COUNTS)
    status = pq.read_table(workdir.status_path("run-1", ACQUIRE.name, "00000")).to_pylist()
    assert [(r["item"], r["state"], r["error_class"]) for r in status] == [
        ("v0", "ok", None),
        ("corrupt", "failed", "VideoDecodeError"),
        ("v1", "ok", None),
        ("v2", "ok", None),
        ("truncated", "failed", "VideoDecodeError"),
        ("v3", "ok", None),
        ("v4", "ok", None),
    ]
    encoder = load_encoder("tiny-random", batch_size=3)
    for path in videos:
        stored = workdir.frames_path(result.frames_keys[path.stem])
        sampled = sample_frames(path, FPS, encoder.image_size)
        np.testing.assert_allclose(read_frame_embeddings(stored), encoder.embed_images(sampled.frames), atol=1e-5, rtol=0)
        assert read_frame_times(stored) == sampled.times_s.tolist()

    DECODE_STATS.reset()
    again = acquire_videos(workdir, "run-2", "00000", specs, config, model)
    assert DECODE_STATS.frames == 0  # stored videos are not decoded; the broken ones fail again
    assert again.reused == len(videos) and again.failed == 2 and again.frames_keys == result.frames_keys

    stored_only = acquire_videos(workdir, "run-3", "00000", [s for s in specs if s.video_id.startswith("v")], config, model)
    assert stored_only.reused == len(videos) and stored_only.encoder is None  # nothing to encode: the weights are not loaded


# --- settings and the text cache ------------------------------------------------------


def test_settings_record_what_the_encoder_uses():
    encoder = load_encoder("tiny-random", batch_size=3, precision="bfloat16")
    settings = encoder.settings()
    assert settings["device"] == "cpu" and settings["dtype"] == "bfloat16" and settings["autocast"] is True
    assert settings["batch_size"] == 3 and settings["compile"] is False and settings["pinned_memory"] is False
    assert settings["torch_threads"] == torch.get_num_threads() and settings["fingerprint"] == encoder.identity.fingerprint
    assert load_encoder("tiny-random", batch_size=3, bf16=True) is encoder  # the same precision, one encoder
    assert load_encoder("tiny-random", batch_size=3).settings()["dtype"] == "float32"


def test_text_cache_encodes_each_text_once(tmp_path: Path):
    clear_text_caches()
    encoder = load_encoder("tiny-random", batch_size=4)
    texts = ["kick the ball in football", "jump over the bar in high jump", "kick the ball in football", "land in high jump"]
    direct = encoder.embed_texts(texts)
    embeddings, encoded = embed_texts_cached(encoder, texts, tmp_path / "texts")
    assert encoded == 3  # the repeated text once
    np.testing.assert_allclose(embeddings, direct, atol=1e-5, rtol=0)
    again, encoded = embed_texts_cached(encoder, ["land in high jump", "a new step in diving"], tmp_path / "texts")
    assert encoded == 1
    np.testing.assert_allclose(again[0], direct[3], atol=1e-6, rtol=0)
    # Another process (a fresh cache on the same folder) finds them on disk.
    fresh = TextEmbeddingCache(tmp_path / "texts")
    from_disk, encoded = fresh.lookup_or_encode(encoder, texts)
    assert encoded == 0 and fresh.hits == 4
    np.testing.assert_allclose(from_disk, embeddings, atol=0, rtol=0)
    # Another precision is another key.
    half = load_encoder("tiny-random", batch_size=4, bf16=True)
    assert fresh.lookup_or_encode(half, texts[:1])[1] == 1


# --- preprocessing versus the Hugging Face image processor ----------------------------

# Measured and explained in actalign/encode_stream.py ("Preprocessing versus the Hugging Face image
# processor"): at 224 px, per clip, max |diff| 0.09-0.53 and mean 0.002-0.017 in pixel-value units; tiny-model
# cosine >= 0.970. The bounds below leave a small margin over those measurements.
MAX_ABS_224 = 0.6
MEAN_ABS_224 = 0.02
MIN_COSINE_TINY = 0.95


def _clip_names() -> list:
    if not (CLIPS_DIR / "MANIFEST.tsv").is_file():
        return [pytest.param("<none>", marks=pytest.mark.skip(reason=NO_CLIPS))]
    with open(CLIPS_DIR / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        return [row["file"] for row in csv.DictReader(handle, delimiter="\t")]


def _pixel_values(frames: np.ndarray) -> np.ndarray:
    """What Encoder._normalise computes for SigLIP (mean = std = 0.5), on the host."""
    return ((torch.from_numpy(frames).permute(0, 3, 1, 2).float() * (1 / 255) - 0.5) / 0.5).numpy()


@pytest.mark.parametrize("name", _clip_names())
def test_decoder_preprocessing_is_close_to_the_hf_processor(name: str):
    path = CLIPS_DIR / name
    if not path.is_file():
        pytest.skip(f"clip {name} missing from {CLIPS_DIR}")
    full = [image.copy() for _, image in iter_sampled_frames(path, 1.0, None)]  # upright, full resolution
    ours = sample_frames(path, 1.0, (224, 224)).frames
    reference = SiglipImageProcessorPil(size={"height": 224, "width": 224})(images=full, return_tensors="np").pixel_values
    diff = np.abs(_pixel_values(ours) - reference)
    assert diff.max() <= MAX_ABS_224 and diff.mean() <= MEAN_ABS_224, (diff.max(), diff.mean())

    tiny = load_encoder("tiny-random")
    ours_tiny = tiny.embed_images(sample_frames(path, 1.0, tiny.image_size).frames)  # torch path
    reference_tiny = np.concatenate([tiny.embed_images(image[None]) for image in full])  # HF processor path (PIL)
    cosine = (ours_tiny * reference_tiny).sum(1) / np.linalg.norm(ours_tiny, axis=1) / np.linalg.norm(reference_tiny, axis=1)
    assert cosine.min() >= MIN_COSINE_TINY, cosine.min()


@pytest.mark.skipif(not __import__("os").environ.get("ACTALIGN_TEST_COMPILE"), reason="torch.compile takes tens of seconds on a CPU; set ACTALIGN_TEST_COMPILE=1")
def test_compiled_encoder_gives_the_same_embeddings(videos: list[Path]):
    plain = load_encoder("tiny-random", batch_size=3)
    compiled = load_encoder("tiny-random", batch_size=3, compile=True)
    assert compiled is not plain and compiled.settings()["compile"] is True
    frames = sample_frames(videos[1], FPS, plain.image_size).frames  # 7 frames: a partial last batch recompiles once
    np.testing.assert_allclose(compiled.embed_images(frames), plain.embed_images(frames), atol=1e-5, rtol=0)
