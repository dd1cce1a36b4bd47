"""Streaming image encoding: every stream's decode workers feed one batcher per encoder.

Design
------
* Each ``encode_stream`` call is a **stream**. A few **decode workers**
  (threads: PyAV and swscale release the GIL) take its videos in order from
  ``sources``. Each opens its video's frame iterator (``FrameSource.open``,
  e.g. ``iter_sampled_frames``; a download may be awaited there) and passes
  its frames, one at a time, through the stream's **bounded pool** of
  ``queue_frames`` preallocated frame slots. A worker copies each frame into
  a free slot and waits when there is none: backpressure. (Preallocated on
  purpose: decoder arrays that lived on in a queue fragmented glibc's heap,
  and RSS crept up with the video's length.)
* **One batcher per encoder object** (so one per process: ``encoder_for``
  shares the encoder between the tasks of a process) runs the model on its
  own service thread, which exists only while at least one stream is
  registered. All streams' workers post their news (a video started, a frame
  is in slot n, a video ended or failed, a worker finished) on the batcher's
  one message queue. The batcher copies each frame into a host batch buffer
  (pinned on cuda) and frees its slot at once, so a stream's workers wait on
  the batcher only, never on another stream's caller. It runs the model
  whenever the buffer holds ``encoder.batch_size`` frames, whatever videos
  and streams they come from: **batches span video and stream boundaries**.
  A partial batch runs only when no registered stream can still send frames
  (each of its workers has finished, or waits for its caller), or when no
  news has come for ``FLUSH_AFTER_S`` (workers waiting on downloads): so shards
  running at once in one process share full batches, only the very last
  batch is partial, and the device does not wait at a shard's end. One
  stream alone is batched exactly as before.
* **A process decodes at most its cores' worth of videos at once**
  (``decoders_at_once``, never fewer than one stream's workers): a worker
  holds one of the batcher's decode permits from its video's first frame to
  its last, taken after ``open`` (so a worker awaiting a download holds
  none). Shards in flight at once then feed the encoder as fast as one shard:
  their workers no longer crowd each other off the cores.
* A video's result (``EncodedVideo``: times and embeddings in frame order) is
  posted on its own stream's results queue as soon as its last frame has been
  encoded; the caller's generator reads only that queue, so each caller gets
  its own videos, in completion order, and writes each one then. A video
  whose decoding fails (at open, or after some frames, even while its frames
  sit in a half-filled batch) comes back as ``FailedVideo``; its frames
  already in a batch are encoded and discarded. Other videos, of this stream
  or another, are unaffected.
* Failures that are no video's own: ``sources`` raising reaches that stream's
  caller only; the model raising reaches every stream registered at that
  moment (they all depend on it). Closing a generator early stops its
  workers; its frames already in a batch are encoded and discarded, and the
  other streams carry on.
* The caller paces its workers too: they start another video only while
  fewer than ``decode_workers + batch_size`` of its results wait to be taken
  (one batch can finish up to ``batch_size`` videos, so a caller that takes
  results as they come never makes them wait). Workers that do wait count as
  unable to send frames: a caller that stops reading, or reads another stream
  first from the same thread, never holds back a partial batch.
* On cuda the batcher keeps one batch in flight: it fills the next buffer
  while the GPU computes the previous batch (two alternating pinned buffers,
  non-blocking copies, see ``Encoder.submit_images``). On the CPU each batch
  runs synchronously.

Memory is bounded by the slot pools and batch sizes, not by the number or
length of videos: per stream ``queue_frames`` frame slots, one frame per
worker being converted, the decoders' own state, and the embeddings (not the
frames) of its videos in flight and of at most ``decode_workers +
batch_size`` results not yet taken (a 10-minute video at 4 fps is 2400 x 768
float32 = 7 MB); per process one or two batch buffers.

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

from actalign.threads import process_cores

if TYPE_CHECKING:
    from actalign.models import Encoder, PendingFeatures

__all__ = [
    "EncodedVideo",
    "FailedVideo",
    "FrameSource",
    "StreamStats",
    "decoders_at_once",
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
    """What one stream did; times in seconds.

    Batches are shared between the streams running at once: ``batches``,
    ``full_batches`` and ``encode_s`` count every batch that held at least one
    of this stream's frames, whole, so summing them over streams counts a
    shared batch once per stream in it; ``wait_s`` is the batcher's wait for
    frames from any stream while this one was registered.
    """

    videos: int = 0  # yielded as EncodedVideo
    failed: int = 0  # yielded as FailedVideo
    frames: int = 0  # frames of successful videos
    encoded_frames: int = 0  # this stream's rows through the model (includes discarded frames of failed videos)
    batches: int = 0  # batches holding any of this stream's frames
    full_batches: int = 0
    encode_s: float = 0.0  # in the model (CPU), or submitting and waiting for results (cuda), for those batches
    wait_s: float = 0.0  # the batcher waiting for decoded frames: what faster decoders would save
    wall_s: float = 0.0
    max_queued: int = 0  # most of this stream's frame slots in use at once
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


def decoders_at_once(encoder: Encoder) -> int:
    """Videos decoded at once in this process, over all streams: its cores (``actalign.threads``), or one
    stream's default workers if more."""
    return max(default_decode_workers(encoder), process_cores()[0])


def default_queue_frames(encoder: Encoder) -> int:
    """Two batches: the next batch is ready when the current one finishes."""
    return 2 * encoder.batch_size


# Messages to the batcher, tuples (kind, stream, *body). From a decode worker:
_START, _FRAME, _END, _ERROR, _DONE, _FATAL, _IDLE, _BUSY = range(8)
# From a stream's caller: registered, and gone (body: whether it was the last stream of the batcher).
_OPEN, _CLOSE = range(8, 10)
_FINISHED = object()  # posted on a stream's results queue after its last result
_QUIET = 10  # not a message: no news for FLUSH_AFTER_S while a partial batch waits
FLUSH_AFTER_S = 1.0  # decoders send a frame every few milliseconds; this long without one, they wait on something else


class _Room:
    """How many of a stream's results wait for its caller: its workers start a video only while fewer than ``limit`` do.

    Results wait in an unbounded queue (the batcher must never block on one
    caller), so this is what keeps a caller that reads slowly, or not at all,
    from piling up embeddings.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._unread = 0
        self._closed = False
        self._changed = threading.Condition()

    def posted(self) -> None:
        with self._changed:
            self._unread += 1

    def taken(self) -> None:
        with self._changed:
            self._unread -= 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait(self, announce: Callable[[int], object]) -> bool:
        """Return when there is room (True) or the stream is closing (False); announce a wait to the batcher.

        A worker waiting here cannot send frames until its caller reads, so the
        batcher must not hold a partial batch for it (``_IDLE``, then ``_BUSY``).
        """
        with self._changed:
            if self._unread < self._limit:
                return True
            announce(_IDLE)
            self._changed.wait_for(lambda: self._unread < self._limit or self._closed)
            if self._closed:
                return False
            announce(_BUSY)
            return True


class _Decoders:
    """A stream's decode workers and its bounded queue to the batcher: a pool of preallocated frame slots.

    A worker copies each frame into a free slot (waiting for one: backpressure)
    and the decoder's own array dies at once, in the thread that made it.
    Frames that lived on in a queue while the decoder kept allocating
    fragmented glibc's heap: RSS crept up with video length (+20 MB from 5 to
    20 minutes); with slots it does not. The batcher frees a slot as soon as
    it has copied the frame into a batch.
    """

    def __init__(self, tag: _Stream, sources: Iterable[FrameSource], capacity: int, image_size: tuple[int, int], decode_nice: int, room: _Room) -> None:
        height, width = image_size
        self.capacity = capacity
        self.pool = np.empty((capacity, height, width, 3), np.uint8)
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(capacity):
            self._free.put(slot)
        self._tag = tag
        self._room = room
        self._messages: queue.Queue[tuple] | None = None  # the batcher's, from start()
        self._permits: threading.Semaphore | None = None  # the batcher's decode permits, from start()
        self._stop = threading.Event()
        self._numbered = enumerate(sources)
        self._take_lock = threading.Lock()
        self._decode_nice = decode_nice
        self._threads: list[threading.Thread] = []

    def start(self, workers: int, messages: queue.Queue[tuple], permits: threading.Semaphore) -> None:
        self._messages = messages
        self._permits = permits
        self._threads = [threading.Thread(target=self._work, name=f"decode-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._room.close()
        for thread in self._threads:  # they notice the stop within 0.1 s, or when their current frame or download is done
            thread.join(timeout=10)

    def queued(self) -> int:
        return self.capacity - self._free.qsize()

    def release(self, slot: int) -> None:
        self._free.put(slot)

    def _put(self, kind: int, *body: object) -> bool:
        if self._stop.is_set() or self._messages is None:
            return False
        self._messages.put((kind, self._tag, *body))
        return True

    def _take_permit(self) -> bool:
        """One of the process's decode permits, or False when the stream is stopping."""
        while not self._stop.is_set():
            if self._permits.acquire(timeout=0.1):
                return True
        return False

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
                if not self._room.wait(self._put) or not self._put(_START, index, source, time.perf_counter()):
                    return
                if not self._decode(index, source):
                    return
        except BaseException as exc:  # noqa: BLE001 - e.g. `sources` raising: not a video's failure
            self._put(_FATAL, exc)
        finally:
            self._put(_DONE)

    def _decode(self, index: int, source: FrameSource) -> bool:
        """Pass one video's frames through the slots, then its end or its own failure; False when the stream is stopping."""
        height, width = self.pool.shape[1:3]
        frames, permitted = None, False
        try:
            frames = source.open()
            permitted = self._take_permit()
            if not permitted:
                return False
            count = 0
            for t, image in frames:
                if image.shape != (height, width, 3) or image.dtype != np.uint8:
                    raise ValueError(f"frame {count} is {image.dtype} {image.shape}, expected uint8 ({height}, {width}, 3)")
                slot = self._take_slot()
                if slot is None:
                    return False
                self.pool[slot] = image
                del image
                if not self._put(_FRAME, index, t, slot):
                    return False
                count += 1
            self._put(_END, index, count, frames)
        except Exception as exc:  # this video's own failure
            self._put(_ERROR, index, exc)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
            if permitted:  # after the close: the next video opens only once this one is let go
                self._permits.release()
        return True


class _Stream:
    """One ``encode_stream`` call: its decoders and slots, its results queue (read by its caller only) and its stats."""

    def __init__(self, sources: Iterable[FrameSource], encoder: Encoder, workers: int, capacity: int, decode_nice: int, stats: StreamStats) -> None:
        self.workers = workers
        self.stats = stats
        self.results: queue.Queue[EncodedVideo | FailedVideo | BaseException | object] = queue.Queue()
        self.room = _Room(workers + encoder.batch_size)
        self.decoders = _Decoders(self, sources, capacity, encoder.image_size, decode_nice, self.room)

    def post(self, item: EncodedVideo | FailedVideo | BaseException | object) -> None:
        """From the batcher: a result, the exception that ends the stream, or ``_FINISHED``."""
        if isinstance(item, (EncodedVideo, FailedVideo)):
            self.room.posted()
        self.results.put(item)

    def outcomes(self) -> Iterator[EncodedVideo | FailedVideo]:
        while (item := self.results.get()) is not _FINISHED:
            if isinstance(item, BaseException):
                raise item
            self.room.taken()
            yield item  # type: ignore[misc]


@dataclass
class _Job:
    source: FrameSource
    started: float
    times: list[float] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # embeddings received so far, in frame order
    expected: int | None = None  # frame count, once the worker has finished the video
    frames: Any = None


class _Served:
    """The batcher's record of one registered stream: its videos in flight and whether it can still send frames."""

    def __init__(self, stream: _Stream, embed_dim: int) -> None:
        self.stream = stream
        self.stats = stream.stats
        self.jobs: dict[int, _Job] = {}
        self.live = stream.workers  # workers not finished
        self.idle = 0  # workers waiting for the caller to take results
        self.gone = False  # finished, failed or closed: nothing more is counted or posted
        self._embed_dim = embed_dim

    @property
    def sending(self) -> bool:
        return self.live > self.idle

    @property
    def finished(self) -> bool:
        return self.live == 0 and not self.jobs

    def start(self, index: int, source: FrameSource, started: float) -> None:
        self.jobs[index] = _Job(source, started)

    def end(self, index: int, count: int, frames: Any) -> None:
        """The video's worker is done: post its result if all its frames are encoded already."""
        job = self.jobs[index]
        job.expected, job.frames = count, frames
        self.complete(index)

    def fail(self, index: int, error: Exception) -> None:
        """Forget a video that failed (its frames in a batch are encoded and discarded)."""
        job = self.jobs.pop(index, None)
        if job is not None:
            self.stats.failed += 1
            self.stream.post(FailedVideo(job.source.key, error, job.started))

    def complete(self, index: int) -> None:
        """Post the video's result once its worker has finished it and all its frames are encoded."""
        job = self.jobs[index]
        if job.expected is None or len(job.rows) < job.expected:
            return
        del self.jobs[index]
        embeddings = np.stack(job.rows) if job.rows else np.zeros((0, self._embed_dim), np.float32)
        self.stats.videos += 1
        self.stats.frames += len(job.rows)
        self.stream.post(EncodedVideo(job.source.key, np.asarray(job.times, dtype=np.float64), embeddings, job.frames, job.started))

    def leave(self, last: BaseException | object | None) -> None:
        """Stop serving this stream; ``last`` (an exception or ``_FINISHED``) is what its caller reads next, if it still reads."""
        self.gone = True
        self.jobs.clear()  # its frames still in a batch are dropped on delivery
        if last is not None:
            self.stream.post(last)


_Row = tuple[_Served, int, _Job]  # whose frame fills a batch row: stream, video index, video


@dataclass
class _Batch:
    handle: PendingFeatures
    rows: list[_Row]


class _Service:
    """The batcher's service thread: batch buffers filled from every registered stream's frames, and the model.

    All its state belongs to its thread; streams reach it only through
    ``messages``, and it reaches them only through their results queues.
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.messages: queue.Queue[tuple] = queue.Queue()  # bounded by the streams' slots (frames) and workers (the rest)
        self.users = 0  # streams registered; guarded by _SERVICES_LOCK
        self.thread = threading.Thread(target=self._serve, name="encode-batcher", daemon=True)
        self.decode_permits = threading.BoundedSemaphore(decoders_at_once(encoder))  # taken by the streams' workers
        self._served: dict[_Stream, _Served] = {}
        self._buffers = [encoder.new_batch_buffer() for _ in range(2 if encoder.device.startswith("cuda") else 1)]
        self._views = [buffer.numpy() for buffer in self._buffers]
        self._current = 0  # which buffer is being filled
        self._rows: list[_Row] = []  # of the current buffer
        self._pending: _Batch | None = None  # cuda: the batch still computing

    def _serve(self) -> None:
        """Handle the news in the order it came, until the last registered stream has gone.

        A partial batch in hand is run anyway when no news has come for ``FLUSH_AFTER_S``: a stream whose
        workers all wait on downloads counts as able to send frames, but must not hold back the others."""
        while True:
            waited = time.perf_counter()
            try:
                kind, stream, *body = self.messages.get(timeout=FLUSH_AFTER_S if self._rows or self._pending else None)
            except queue.Empty:
                kind, stream, body = _QUIET, None, []
            waited = time.perf_counter() - waited
            for served in self._served.values():
                served.stats.wait_s += waited
            if kind == _CLOSE and body[0]:
                return
            try:
                self._handle(kind, stream, body)
                self._settle(flush=kind == _QUIET)
            except Exception as exc:  # noqa: BLE001 - the model failing: every stream waiting on it gets the exception
                self._fail_all(exc)

    def _handle(self, kind: int, stream: _Stream | None, body: list) -> None:
        if kind == _QUIET:
            return
        if kind == _OPEN:
            self._served[stream] = _Served(stream, self.encoder.embed_dim)
            return
        if kind == _CLOSE:  # closed early, maybe while the others waited for it to fill their partial batch
            if (served := self._served.pop(stream, None)) is not None:
                served.leave(None)  # nobody reads it any more
            return
        served = self._served.get(stream)
        if served is None:
            return  # late news of a stream that failed or was closed
        if kind == _FRAME:
            self._add(served, *body)
        elif kind == _START:
            served.start(*body)
        elif kind == _END:
            served.end(*body)
        elif kind == _ERROR:
            served.fail(*body)
        elif kind == _DONE:
            served.live -= 1
        elif kind == _IDLE:
            served.idle += 1
        elif kind == _BUSY:
            served.idle -= 1
        elif kind == _FATAL:
            del self._served[stream]
            served.leave(body[0])

    def _add(self, served: _Served, index: int, t: float, slot: int) -> None:
        """Copy a frame into the next row of the current buffer and free its slot; run the batch when it is full."""
        decoders = served.stream.decoders
        served.stats.max_queued = max(served.stats.max_queued, decoders.queued())
        job = served.jobs[index]
        self._views[self._current][len(self._rows)] = decoders.pool[slot]
        decoders.release(slot)
        self._rows.append((served, index, job))
        job.times.append(t)
        if len(self._rows) == self.encoder.batch_size:
            self._submit()

    def _settle(self, flush: bool = False) -> None:
        """Run a partial batch only when no stream can send frames (or ``flush``); let finished streams go."""
        if (self._rows or self._pending is not None) and (flush or not any(served.sending for served in self._served.values())):
            if self._rows:
                self._submit()
            if self._pending is not None:
                batch, self._pending = self._pending, None
                self._deliver(batch)
        for stream, served in list(self._served.items()):
            if served.finished:
                del self._served[stream]
                served.leave(_FINISHED)

    def _submit(self) -> None:
        """Submit the current buffer; deliver the batch before it (cuda), or this one when it is done already."""
        rows, self._rows = self._rows, []
        started = time.perf_counter()
        handle = self.encoder.submit_images(self._buffers[self._current][: len(rows)])
        self._charge(rows, time.perf_counter() - started, count=True)
        self._current = (self._current + 1) % len(self._buffers)
        if self._pending is not None:  # the batch before: its buffer is the one filled next
            batch, self._pending = self._pending, None
            self._deliver(batch)
        if handle.done():
            self._deliver(_Batch(handle, rows))
        else:
            self._pending = _Batch(handle, rows)

    def _deliver(self, batch: _Batch) -> None:
        started = time.perf_counter()
        features = batch.handle.result()
        self._charge(batch.rows, time.perf_counter() - started, count=False)
        touched: dict[tuple[_Served, int], None] = {}
        for row, (served, index, job) in enumerate(batch.rows):
            if served.jobs.get(index) is not job:
                continue  # the video failed (or its stream went) after these frames were batched: drop them
            job.rows.append(features[row])
            touched[served, index] = None
        for served, index in touched:
            served.complete(index)

    def _charge(self, rows: list[_Row], seconds: float, *, count: bool) -> None:
        """Add a batch's model time (and, when submitted, the batch itself) to the stats of every stream in it."""
        per_stream: dict[_Served, int] = {}
        for served, _, _ in rows:
            per_stream[served] = per_stream.get(served, 0) + 1
        full = len(rows) == self.encoder.batch_size
        for served, frames in per_stream.items():
            if served.gone:
                continue
            served.stats.encode_s += seconds
            if count:
                served.stats.batches += 1
                served.stats.full_batches += full
                served.stats.encoded_frames += frames

    def _fail_all(self, error: Exception) -> None:
        """The model failed: the batches in hand are lost, and so is every stream registered now."""
        self._rows, self._pending = [], None
        served, self._served = list(self._served.values()), {}
        for record in served:
            record.leave(error)


# One batcher service per encoder object, while streams use it. Reentrant: the garbage collector may close an
# abandoned generator (and so unregister its stream) in whatever thread it runs, also one holding the lock.
_SERVICES: dict[Encoder, _Service] = {}
_SERVICES_LOCK = threading.RLock()


def _register(encoder: Encoder, stream: _Stream) -> _Service:
    """The encoder's service (started now if no stream uses it), with ``stream`` registered before any of its news."""
    with _SERVICES_LOCK:
        service = _SERVICES.get(encoder)
        if service is None:
            service = _SERVICES[encoder] = _Service(encoder)
            service.thread.start()
        service.users += 1
        service.messages.put((_OPEN, stream))
    return service


def _unregister(encoder: Encoder, service: _Service, stream: _Stream) -> None:
    """Let the service forget ``stream``; the last stream to go waits for the service thread to end."""
    with _SERVICES_LOCK:
        service.users -= 1
        last = service.users == 0
        if last:
            del _SERVICES[encoder]
    service.messages.put((_CLOSE, stream, last))
    if last and threading.current_thread() is not service.thread:  # not when collected in the service thread itself
        service.thread.join()


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

    Streams running at once on the same ``encoder`` (e.g. shards in threads)
    share its batches. ``sources`` may be lazy; it is consumed by the workers
    under a lock. An exception that is not a video's own (the model failing,
    ``sources`` raising) propagates. Closing the generator early stops the
    workers. ``decode_nice`` > 0 lowers the decode threads' scheduling
    priority (Linux: per thread), so that on a machine with few cores they
    take CPU from the model only when it waits.
    """
    workers = max(1, decode_workers if decode_workers is not None else default_decode_workers(encoder))
    capacity = max(1, queue_frames if queue_frames is not None else default_queue_frames(encoder))
    stats = stats if stats is not None else StreamStats()
    stats.decode_workers, stats.queue_frames, stats.batch_size = workers, capacity, encoder.batch_size
    began = time.perf_counter()
    stream = _Stream(sources, encoder, workers, capacity, decode_nice, stats)
    service = _register(encoder, stream)
    try:
        stream.decoders.start(workers, service.messages, service.decode_permits)
        yield from stream.outcomes()
    finally:
        stream.decoders.stop()
        _unregister(encoder, service, stream)
        stats.wall_s = time.perf_counter() - began
