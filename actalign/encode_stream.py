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
values differ, measured on the 15 clips of ``../shared/clips`` at 1 frame/s
(134 frames; pixel-value units, ``(x/255 - 0.5)/0.5``, range [-1, 1]):

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


_START, _FRAME, _END, _ERROR, _DONE, _FATAL = range(6)


@dataclass
class _Job:
    source: FrameSource
    started: float
    times: list[float] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # embeddings received so far, in frame order
    expected: int | None = None  # frame count, once the worker has finished the video
    frames: Any = None


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
    workers_n = max(1, decode_workers if decode_workers is not None else default_decode_workers(encoder))
    capacity = max(1, queue_frames if queue_frames is not None else default_queue_frames(encoder))
    stats = stats if stats is not None else StreamStats()
    stats.decode_workers, stats.queue_frames, stats.batch_size = workers_n, capacity, encoder.batch_size
    began = time.perf_counter()

    batch_size, height, width = encoder.batch_size, *encoder.image_size
    # The bounded queue is a pool of preallocated frame slots: a worker copies each frame into a free slot
    # (waiting for one: backpressure) and the decoder's own array dies at once, in the thread that made it.
    # Frames that lived on in a queue while the decoder kept allocating fragmented glibc's heap: RSS crept
    # up with video length (+20 MB from 5 to 20 minutes); with slots it does not.
    pool = np.empty((capacity, height, width, 3), np.uint8)
    free: queue.Queue[int] = queue.Queue()
    for slot in range(capacity):
        free.put(slot)
    messages: queue.Queue[tuple] = queue.Queue()  # bounded by the slots (frames) and the workers (the rest)
    stop = threading.Event()
    numbered = enumerate(sources)
    take_lock = threading.Lock()

    def put(item: tuple) -> bool:
        if stop.is_set():
            return False
        messages.put(item)
        return True

    def take_slot() -> int | None:
        while not stop.is_set():
            try:
                return free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def work() -> None:
        if decode_nice > 0:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), decode_nice)
            except (AttributeError, OSError):
                pass
        try:
            while not stop.is_set():
                with take_lock:
                    try:
                        index, source = next(numbered)
                    except StopIteration:
                        return
                if not put((_START, index, source, time.perf_counter())):
                    return
                frames = None
                try:
                    frames = source.open()
                    count = 0
                    for t, image in frames:
                        if image.shape != (height, width, 3) or image.dtype != np.uint8:
                            raise ValueError(f"frame {count} is {image.dtype} {image.shape}, expected uint8 ({height}, {width}, 3)")
                        slot = take_slot()
                        if slot is None:
                            return
                        pool[slot] = image
                        del image
                        if not put((_FRAME, index, t, slot)):
                            return
                        count += 1
                    put((_END, index, count, frames))
                except Exception as exc:  # this video's own failure
                    put((_ERROR, index, exc))
                finally:
                    close = getattr(frames, "close", None)
                    if close is not None:
                        close()
        except BaseException as exc:  # noqa: BLE001 - e.g. `sources` raising: not a video's failure
            put((_FATAL, exc))
        finally:
            put((_DONE,))

    threads = [threading.Thread(target=work, name=f"decode-{i}", daemon=True) for i in range(workers_n)]
    for thread in threads:
        thread.start()

    asynchronous = encoder.device.startswith("cuda")
    buffers = [encoder.new_batch_buffer() for _ in range(2 if asynchronous else 1)]
    views = [buffer.numpy() for buffer in buffers]
    current = 0  # which buffer is being filled
    slots: list[tuple[int, _Job]] = []  # (job index, job) of each filled row of the current batch buffer
    jobs: dict[int, _Job] = {}
    pending: tuple[PendingFeatures, list[tuple[int, _Job]]] | None = None

    def finish(index: int) -> EncodedVideo:
        job = jobs.pop(index)
        embeddings = np.stack(job.rows) if job.rows else np.zeros((0, encoder.embed_dim), np.float32)
        stats.videos += 1
        stats.frames += len(job.rows)
        return EncodedVideo(job.source.key, np.asarray(job.times, dtype=np.float64), embeddings, job.frames, job.started)

    def deliver(handle: PendingFeatures, rows: list[tuple[int, _Job]]) -> Iterator[EncodedVideo]:
        started = time.perf_counter()
        features = handle.result()
        stats.encode_s += time.perf_counter() - started
        touched: dict[int, _Job] = {}
        for row, (index, job) in enumerate(rows):
            if jobs.get(index) is not job:
                continue  # the video failed after these frames were batched: drop them
            job.rows.append(features[row])
            touched[index] = job
        for index, job in touched.items():
            if job.expected is not None and len(job.rows) == job.expected:
                yield finish(index)

    def run_batch() -> Iterator[EncodedVideo]:
        nonlocal current, slots, pending
        rows, slots = slots, []
        started = time.perf_counter()
        handle = encoder.submit_images(buffers[current][: len(rows)])
        stats.encode_s += time.perf_counter() - started
        stats.batches += 1
        stats.full_batches += len(rows) == batch_size
        stats.encoded_frames += len(rows)
        current = (current + 1) % len(buffers)
        if pending is not None:  # the batch before: its buffer is the one filled next
            yield from deliver(*pending)
            pending = None
        if handle.done():
            yield from deliver(handle, rows)
        else:
            pending = (handle, rows)

    live = workers_n
    try:
        while live:
            stats.max_queued = max(stats.max_queued, capacity - free.qsize())
            waited = time.perf_counter()
            message = messages.get()
            stats.wait_s += time.perf_counter() - waited
            kind = message[0]
            if kind == _FRAME:
                _, index, t, slot = message
                job = jobs[index]
                views[current][len(slots)] = pool[slot]
                free.put(slot)
                slots.append((index, job))
                job.times.append(t)
                if len(slots) == batch_size:
                    yield from run_batch()
            elif kind == _START:
                _, index, source, started = message
                jobs[index] = _Job(source, started)
            elif kind == _END:
                _, index, count, frames = message
                job = jobs[index]
                job.expected, job.frames = count, frames
                if len(job.rows) == count:
                    yield finish(index)
            elif kind == _ERROR:
                _, index, error = message
                job = jobs.pop(index, None)
                if job is not None:
                    stats.failed += 1
                    yield FailedVideo(job.source.key, error, job.started)
            elif kind == _DONE:
                live -= 1
            elif kind == _FATAL:
                raise message[1]
        if slots:
            yield from run_batch()
        if pending is not None:
            yield from deliver(*pending)
            pending = None
        if jobs:  # cannot happen: every started video ends, fails or is dropped
            raise RuntimeError(f"encode_stream: {len(jobs)} videos neither finished nor failed")
    finally:
        stop.set()
        for thread in threads:  # they notice `stop` within 0.1 s, or when their current frame or download is done
            thread.join(timeout=10)
        stats.wall_s = time.perf_counter() - began
