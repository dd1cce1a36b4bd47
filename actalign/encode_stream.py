"""Streaming image encoding: decode workers feed one encoder through a bounded queue.

Design
------
* A few **decode workers** (threads: PyAV and swscale release the GIL) take
  videos in order from ``sources``. Each opens its video's frame iterator
  (``FrameSource.open``, e.g. ``iter_sampled_frames``; a download may be
  awaited there) and passes its frames, one at a time, through **one bounded
  queue**: a pool of ``queue_frames`` preallocated frame slots. A worker
  copies each frame into a free slot and waits when there is none:
  backpressure. (Preallocated on purpose: decoder arrays that lived on in a
  queue fragmented glibc's heap, and RSS crept up with the video's length.)
* **One encoder**, the caller's thread (this is a generator), copies frames
  from the queue into a host batch buffer (pinned on cuda) and runs the model
  whenever the buffer holds ``encoder.batch_size`` frames, whatever videos
  they come from: **batches span video boundaries**, so every batch is full
  except the very last one of the stream.
* A video's result (``EncodedVideo``: times and embeddings in frame order) is
  yielded as soon as its last frame has been encoded, so the caller writes
  it then; a video whose decoding fails (at open, or after some frames, even
  while its frames sit in a half-filled batch) is yielded as ``FailedVideo``
  and its frames already in a batch are encoded and discarded. Other videos
  are unaffected. Results come in completion order, not input order.
* On cuda the encoder keeps one batch in flight: it fills the next buffer
  while the GPU computes the previous batch (two alternating pinned buffers,
  non-blocking copies, see ``Encoder.submit_images``). On the CPU each batch
  runs synchronously.

Memory is bounded by the queue and batch sizes, not by the number or length of
videos: ``queue_frames`` frame slots, one or two batch buffers, one frame per
worker being converted, the decoders' own state, and the embeddings (not
the frames) of the videos in flight (about ``decode_workers`` + 1 videos; a
10-minute video at 4 fps is 2400 x 768 float32 = 7 MB).

Preprocessing versus the Hugging Face image processor
-----------------------------------------------------
Frames reach the model without any PIL round-trip: the decoder converts YUV
to RGB and resizes to the model's input size in one swscale call (bilinear;
the chroma planes are scaled separately before conversion), and the encoder
rescales and normalises in torch (``Encoder._normalise``: the same arithmetic
as the processor, equal to 1e-5 on the same frames). The processor instead
gets the full-size RGB frame and resizes it with PIL bicubic. So the pixel
values differ, measured on 15 real short clips at 1 frame/s (134 frames;
pixel-value units, ``(x/255 - 0.5)/0.5``, range [-1, 1]):

* at 224 x 224, per clip: max |diff| 0.09 to 0.53 (isolated pixels on sharp
  colour edges: chroma subsampling handled differently), mean |diff| 0.002
  to 0.017 (0.3 to 2.2 grey levels); the 224 x 224 GIF is identical;
* cosine between the embeddings of the two versions of a frame: base-size
  SigLIP (random weights, 224 px) min 0.9962, mean per clip >= 0.9976;
  tiny model (32 px input, so a 10-40x downscale) min 0.970.

``tests/test_encode_stream.py`` asserts max <= 0.6, mean <= 0.02 and tiny-model
cosine >= 0.95 for every clip. For reference, swscale bicubic would bring the
mean down to 0.0072 (from 0.0098 over all clips) at +0.5 ms per frame, and
adding ``ACCURATE_RND | FULL_CHR_H_INT | FULL_CHR_H_INP`` halves the max
(0.28); both change the stored frames (a new acquire VERSION), so they are not
applied. Random weights say little about how a trained model reacts to such
differences; with a trained checkpoint the same measurement is the test to rerun.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from actalign.models import Encoder, PendingFeatures

__all__ = [
    "EncodedVideo",
    "FailedVideo",
    "FrameSource",
    "StreamStats",
    "default_decode_workers",
    "default_queue_frames",
    "encode_stream",
]


@dataclass(frozen=True)
class FrameSource:
    """One video: ``open()`` is called in a decode worker and returns its ``(t, uint8 HxWx3 image)`` pairs.

    Images must be at ``encoder.image_size``. Whatever ``open`` returns is
    passed back as ``EncodedVideo.frames`` (e.g. a ``SampledFrameIterator``
    carrying ``source_fps`` and ``duration_s``) and closed (if it has ``close``)
    when the worker is done with it.
    """

    key: Hashable
    open: Callable[[], Iterable[tuple[float, np.ndarray]]]


@dataclass(frozen=True)
class EncodedVideo:
    key: Hashable
    times_s: np.ndarray  # float64 (N,), as the source yielded them
    embeddings: np.ndarray  # float32 (N, embed_dim), row i is frame i
    frames: Any  # what FrameSource.open returned
    started: float  # time.perf_counter() when its decode worker started on it


@dataclass(frozen=True)
class FailedVideo:
    key: Hashable
    error: Exception
    started: float


@dataclass
class StreamStats:
    """What one stream did; times in seconds."""

    videos: int = 0  # yielded as EncodedVideo
    failed: int = 0  # yielded as FailedVideo
    frames: int = 0  # frames of successful videos
    encoded_frames: int = 0  # rows through the model (includes discarded frames of failed videos)
    batches: int = 0
    full_batches: int = 0
    encode_s: float = 0.0  # in the model (CPU), or submitting and waiting for results (cuda)
    wait_s: float = 0.0  # the encoder waiting for decoded frames: what a faster decoder would save
    wall_s: float = 0.0
    max_queued: int = 0
    decode_workers: int = 0
    queue_frames: int = 0
    batch_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0


def default_decode_workers(encoder: Encoder) -> int:
    """CPU: 2 (decoding must not take cores from the model; two hide each other's waits);
    cuda: up to 8 (the GPU outruns one or two decoders)."""
    cores = os.cpu_count() or 1
    if encoder.device.startswith("cuda"):
        return max(2, min(8, cores))
    return 2


def default_queue_frames(encoder: Encoder) -> int:
    """Two batches: the next batch is ready when the current one finishes."""
    return 2 * encoder.batch_size


_START, _FRAME, _END, _ERROR, _DONE, _FATAL = range(6)  # what a decode worker tells the encoder (tuples: kind first)


class _Decoders:
    """The decode workers and the bounded queue to the encoder: a pool of preallocated frame slots.

    A worker copies each frame into a free slot (waiting for one: backpressure)
    and the decoder's own array dies at once, in the thread that made it.
    Frames that lived on in a queue while the decoder kept allocating
    fragmented glibc's heap: RSS crept up with video length (+20 MB from 5 to
    20 minutes); with slots it does not.
    """

    def __init__(self, sources: Iterable[FrameSource], capacity: int, image_size: tuple[int, int], decode_nice: int) -> None:
        height, width = image_size
        self.capacity = capacity
        self.pool = np.empty((capacity, height, width, 3), np.uint8)
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(capacity):
            self._free.put(slot)
        self.messages: queue.Queue[tuple] = queue.Queue()  # bounded by the slots (frames) and the workers (the rest)
        self._stop = threading.Event()
        self._numbered = enumerate(sources)
        self._take_lock = threading.Lock()
        self._decode_nice = decode_nice
        self._threads: list[threading.Thread] = []

    def start(self, workers: int) -> None:
        self._threads = [threading.Thread(target=self._work, name=f"decode-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:  # they notice the stop within 0.1 s, or when their current frame or download is done
            thread.join(timeout=10)

    def queued(self) -> int:
        return self.capacity - self._free.qsize()

    def release(self, slot: int) -> None:
        self._free.put(slot)

    def _put(self, item: tuple) -> bool:
        if self._stop.is_set():
            return False
        self.messages.put(item)
        return True

    def _take_slot(self) -> int | None:
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _work(self) -> None:
        if self._decode_nice > 0:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._decode_nice)
            except (AttributeError, OSError):
                pass
        try:
            while not self._stop.is_set():
                with self._take_lock:
                    try:
                        index, source = next(self._numbered)
                    except StopIteration:
                        return
                if not self._put((_START, index, source, time.perf_counter())) or not self._decode(index, source):
                    return
        except BaseException as exc:  # noqa: BLE001 - e.g. `sources` raising: not a video's failure
            self._put((_FATAL, exc))
        finally:
            self._put((_DONE,))

    def _decode(self, index: int, source: FrameSource) -> bool:
        """Pass one video's frames through the slots, then its end or its own failure; False when the stream is stopping."""
        height, width = self.pool.shape[1:3]
        frames = None
        try:
            frames = source.open()
            count = 0
            for t, image in frames:
                if image.shape != (height, width, 3) or image.dtype != np.uint8:
                    raise ValueError(f"frame {count} is {image.dtype} {image.shape}, expected uint8 ({height}, {width}, 3)")
                slot = self._take_slot()
                if slot is None:
                    return False
                self.pool[slot] = image
                del image
                if not self._put((_FRAME, index, t, slot)):
                    return False
                count += 1
            self._put((_END, index, count, frames))
        except Exception as exc:  # this video's own failure
            self._put((_ERROR, index, exc))
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        return True


@dataclass
class _Job:
    source: FrameSource
    started: float
    times: list[float] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # embeddings received so far, in frame order
    expected: int | None = None  # frame count, once the worker has finished the video
    frames: Any = None


class _Batches:
    """The encoder's side: batch buffers filled across videos, the videos in flight, and (cuda) the batch still computing."""

    def __init__(self, encoder: Encoder, stats: StreamStats) -> None:
        self.encoder = encoder
        self.stats = stats
        self.buffers = [encoder.new_batch_buffer() for _ in range(2 if encoder.device.startswith("cuda") else 1)]
        self.views = [buffer.numpy() for buffer in self.buffers]
        self.current = 0  # which buffer is being filled
        self.rows: list[tuple[int, _Job]] = []  # (job index, job) of each filled row of the current buffer
        self.jobs: dict[int, _Job] = {}
        self.pending: tuple[PendingFeatures, list[tuple[int, _Job]]] | None = None

    @property
    def full(self) -> bool:
        return len(self.rows) == self.encoder.batch_size

    def start(self, index: int, source: FrameSource, started: float) -> None:
        self.jobs[index] = _Job(source, started)

    def add(self, index: int, t: float, image: np.ndarray) -> None:
        """Copy a frame into the next row of the current buffer."""
        job = self.jobs[index]
        self.views[self.current][len(self.rows)] = image
        self.rows.append((index, job))
        job.times.append(t)

    def end(self, index: int, count: int, frames: Any) -> EncodedVideo | None:
        """The video's worker is done: its result, if all its frames are encoded already."""
        job = self.jobs[index]
        job.expected, job.frames = count, frames
        return self._finish(index) if len(job.rows) == count else None

    def fail(self, index: int, error: Exception) -> FailedVideo | None:
        """Forget a video that failed (its frames in a batch are encoded and discarded)."""
        job = self.jobs.pop(index, None)
        if job is None:
            return None
        self.stats.failed += 1
        return FailedVideo(job.source.key, error, job.started)

    def run(self) -> Iterator[EncodedVideo]:
        """Submit the current buffer; deliver the batch before it (cuda), or this one when it is done already."""
        rows, self.rows = self.rows, []
        started = time.perf_counter()
        handle = self.encoder.submit_images(self.buffers[self.current][: len(rows)])
        self.stats.encode_s += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.full_batches += len(rows) == self.encoder.batch_size
        self.stats.encoded_frames += len(rows)
        self.current = (self.current + 1) % len(self.buffers)
        if self.pending is not None:  # the batch before: its buffer is the one filled next
            yield from self._deliver(*self.pending)
            self.pending = None
        if handle.done():
            yield from self._deliver(handle, rows)
        else:
            self.pending = (handle, rows)

    def drain(self) -> Iterator[EncodedVideo]:
        """After the last message: the last, partial batch and the one still computing."""
        if self.rows:
            yield from self.run()
        if self.pending is not None:
            yield from self._deliver(*self.pending)
            self.pending = None
        if self.jobs:  # cannot happen: every started video ends, fails or is dropped
            raise RuntimeError(f"encode_stream: {len(self.jobs)} videos neither finished nor failed")

    def _deliver(self, handle: PendingFeatures, rows: list[tuple[int, _Job]]) -> Iterator[EncodedVideo]:
        started = time.perf_counter()
        features = handle.result()
        self.stats.encode_s += time.perf_counter() - started
        touched: dict[int, _Job] = {}
        for row, (index, job) in enumerate(rows):
            if self.jobs.get(index) is not job:
                continue  # the video failed after these frames were batched: drop them
            job.rows.append(features[row])
            touched[index] = job
        for index, job in touched.items():
            if job.expected is not None and len(job.rows) == job.expected:
                yield self._finish(index)

    def _finish(self, index: int) -> EncodedVideo:
        job = self.jobs.pop(index)
        embeddings = np.stack(job.rows) if job.rows else np.zeros((0, self.encoder.embed_dim), np.float32)
        self.stats.videos += 1
        self.stats.frames += len(job.rows)
        return EncodedVideo(job.source.key, np.asarray(job.times, dtype=np.float64), embeddings, job.frames, job.started)


def encode_stream(
    encoder: Encoder,
    sources: Iterable[FrameSource],
    *,
    decode_workers: int | None = None,
    queue_frames: int | None = None,
    decode_nice: int = 0,
    stats: StreamStats | None = None,
) -> Iterator[EncodedVideo | FailedVideo]:
    """Encode every frame of every source; yield each video's result when it is complete.

    ``sources`` may be lazy; it is consumed by the workers under a lock. An
    exception that is not a video's own (the model failing, ``sources``
    raising) propagates. Closing the generator early stops the workers.
    ``decode_nice`` > 0 lowers the decode threads' scheduling priority (Linux:
    per thread), so that on a machine with few cores they take CPU from the
    model only when it waits.
    """
    workers = max(1, decode_workers if decode_workers is not None else default_decode_workers(encoder))
    capacity = max(1, queue_frames if queue_frames is not None else default_queue_frames(encoder))
    stats = stats if stats is not None else StreamStats()
    stats.decode_workers, stats.queue_frames, stats.batch_size = workers, capacity, encoder.batch_size
    began = time.perf_counter()
    decoders = _Decoders(sources, capacity, encoder.image_size, decode_nice)
    decoders.start(workers)
    try:
        batches = _Batches(encoder, stats)
        live = workers
        while live:
            stats.max_queued = max(stats.max_queued, decoders.queued())
            waited = time.perf_counter()
            message = decoders.messages.get()
            stats.wait_s += time.perf_counter() - waited
            kind, *body = message
            if kind == _FRAME:
                index, t, slot = body
                batches.add(index, t, decoders.pool[slot])
                decoders.release(slot)
                if batches.full:
                    yield from batches.run()
            elif kind == _START:
                batches.start(*body)
            elif kind in (_END, _ERROR):
                result = batches.end(*body) if kind == _END else batches.fail(*body)
                if result is not None:
                    yield result
            elif kind == _DONE:
                live -= 1
            elif kind == _FATAL:
                raise body[0]
        yield from batches.drain()
    finally:
        decoders.stop()
        stats.wall_s = time.perf_counter() - began
