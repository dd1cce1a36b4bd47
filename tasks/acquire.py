"""Acquire stage: fetch (remote videos), decode and sample, obfuscate, embed, store under the frames key.

The stage streams (``actalign.encode_stream``): downloads, decoding and encoding
overlap, batches span videos, and memory does not grow with the number or the
length of the videos.

A video whose frames key already has a stored file is neither downloaded nor
decoded again. The key of a remote video is its download's media key (source,
segment, resolution cap), so a cached re-run never touches the network; a local
file is keyed by its content. A download found permanently unavailable is
remembered (``media/failed/<media key>.txt``) and not tried again unless the
run sets ``download.retry_failed``; transient failures are retried by the next run.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from actalign.config import RunConfig
from actalign.download import Downloaded, FetchRequest, PermanentDownloadError, fetch_one, is_remote, media_key, source_key
from actalign.encode_stream import EncodedVideo, FailedVideo, FrameSource, StreamStats, default_decode_workers, encode_stream
from actalign.errors import ItemError, VideoNotFoundError
from actalign.frames import SampledFrameIterator, iter_sampled_frames
from actalign.manifest import VideoSpec
from actalign.registry import ModelIdentity, check_same_model, encoder_for
from actalign.stages import ACQUIRE, frames_key
from actalign.storage.embeddings import write_frame_embeddings
from actalign.storage.integrity import CORRUPT_NOTE, Stored, check
from actalign.storage.records import StatusRow, write_status
from actalign.storage.workdir import Workdir
from actalign.threads import ThreadBudget, apply, budget_for

if TYPE_CHECKING:
    from actalign.models import Encoder

log = logging.getLogger(__name__)


@dataclass
class AcquireResult:
    frames_keys: dict[str, str] = field(default_factory=dict)  # video_id -> frames key, for videos that succeeded
    decoded_frames: int = 0
    encoded_frames: int = 0
    downloaded: int = 0  # videos fetched over the network by this run
    reused: int = 0
    failed: int = 0
    encoder: dict | None = None  # the loaded encoder's settings (None: nothing needed encoding)
    decoding: dict | None = None  # decoders side by side and FFmpeg threads each (None: nothing decoded)


def source_fingerprint(video: VideoSpec, config: RunConfig) -> str:
    """Remote: the media key of its download; local: the file's content (``actalign.download.source_key``)."""
    try:
        return source_key(video.source, video.start_s, video.end_s, config.download.options())
    except OSError as exc:
        raise VideoNotFoundError(
            f"video {video.video_id!r}: cannot read {video.source} ({exc.strerror or exc}); fix its path in the manifest"
        ) from exc


def failure_marker(workdir: Workdir, video: VideoSpec, config: RunConfig) -> Path:
    return workdir.media_dir / "failed" / f"{media_key(video.source, video.start_s, video.end_s, config.download.options())}.txt"


def acquire_videos(workdir: Workdir, run_id: str, shard: str, videos: list[VideoSpec], config: RunConfig, model: ModelIdentity) -> AcquireResult:
    """Every video ends as a stored file or a failed status row; one bad video never stops the others.

    Streaming (``actalign.encode_stream``): downloads run in a small pool, in
    video order; decode workers sample each video as soon as its file is there;
    one encoder runs full batches across video boundaries; a video's
    embeddings are written as soon as its last frame is encoded. Keys come
    from the planned ``model``; the weights are loaded only when a video needs encoding.
    """
    budget = apply(budget_for(config.workers))  # in this thread, before any BLAS or torch call (actalign.threads)
    result, rows, todo = AcquireResult(), [], {}
    for video in videos:
        key = None
        try:
            key = frames_key(video, source_fingerprint(video, config), config, model)
            stored = check(workdir, workdir.frames_path(key))
            if stored is Stored.OK:
                result.reused += 1
                result.frames_keys[video.video_id] = key
                rows.append(StatusRow(ACQUIRE.name, video.video_id, "skipped", key, message="reused from the store"))
            elif is_remote(video.source) and failure_marker(workdir, video, config).exists() and not config.download.retry_failed:
                raise PermanentDownloadError(
                    failure_marker(workdir, video, config).read_text() + " (recorded by an earlier run; --retry-failed tries again)"
                )
            else:
                todo[video.video_id] = _Item(video, key, note=CORRUPT_NOTE if stored is Stored.CORRUPT else None)
        except Exception as exc:  # any per-video failure is recorded, never fatal to the shard
            result.failed += 1
            rows.append(StatusRow.failed(ACQUIRE.name, video.video_id, exc, key=key))
    if todo:
        encoder = encoder_for(config)
        check_same_model(model, encoder.identity)
        result.encoder = encoder.settings()
        rows.extend(_stream(workdir, list(todo.values()), config, encoder, budget, result))
    order = {video.video_id: i for i, video in enumerate(videos)}
    rows.sort(key=lambda row: order.get(row.item, len(order)))
    write_status(workdir, run_id, ACQUIRE.name, shard, rows)
    return result


def acquire_settled_shards(
    workdir: Workdir, run_id: str, shards: dict[str, list[VideoSpec]], config: RunConfig, model: ModelIdentity
) -> dict[str, AcquireResult]:
    """``acquire_videos`` for each shard the plan found stored whole, in one task run: for such a shard the
    task run costs more than the stage's checks. A shard found wanting after all is still acquired."""
    return {name: acquire_videos(workdir, run_id, name, videos, config, model) for name, videos in shards.items()}


@dataclass
class _Item:
    video: VideoSpec
    key: str
    download: Future | None = None  # of fetch_one's result
    fetched: Downloaded | None = None
    note: str | None = None  # said in the status row (a corrupt stored file replaced)


def _stream(workdir: Workdir, items: list[_Item], config: RunConfig, encoder: Encoder, budget: ThreadBudget, result: AcquireResult) -> list[StatusRow]:
    options = config.download.options()
    decoders = default_decode_workers(encoder)
    decoder_threads = budget.decoder_threads(decoders)
    result.decoding = {"decoders": decoders, "decoder_threads": decoder_threads}
    fetch_pool = ThreadPoolExecutor(max_workers=max(1, config.download.concurrency), thread_name_prefix="fetch")
    try:
        shared: dict[str, Future] = {}  # one fetch per media key (remote) or path and segment (local), as in fetch_many
        for item in items:  # submitted in video order: the decoders wait on the earliest first
            request = FetchRequest(item.video.source, item.video.start_s, item.video.end_s)
            segment = request.key(options)
            if segment not in shared:
                shared[segment] = fetch_pool.submit(fetch_one, request, workdir.media_dir, options)
            item.download = shared[segment]

        def opener(item: _Item):
            def open_frames() -> SampledFrameIterator:
                fetched = item.download.result()  # type: ignore[union-attr]
                if isinstance(fetched, ItemError):
                    raise fetched
                item.fetched = fetched
                video = item.video
                end = fetched.offset_s + (video.end_s - (video.start_s or 0.0)) if video.end_s is not None else None
                options = {"obfuscation": video.obfuscation, "centre_crop": encoder.identity.centre_crop, "decoder_threads": decoder_threads}
                return iter_sampled_frames(fetched.path, config.fps, encoder.image_size, fetched.offset_s, end, **options)

            return open_frames

        sources = [FrameSource(i, opener(item)) for i, item in enumerate(items)]
        stats = StreamStats()
        rows = []
        for outcome in encode_stream(encoder, sources, decode_workers=decoders, stats=stats):
            item = items[outcome.key]
            rows.append(_record(workdir, item, outcome, config, encoder, result))
        log.info(
            "acquire: %d videos, %d frames in %.1f s (%.2f frames/s; model %.1f s, waiting for frames %.1f s; %d/%d full batches)",
            stats.videos, stats.frames, stats.wall_s, stats.frames_per_s, stats.encode_s, stats.wait_s, stats.full_batches, stats.batches,
        )
        return rows
    finally:
        fetch_pool.shutdown(wait=True, cancel_futures=True)


def _record(
    workdir: Workdir, item: _Item, outcome: EncodedVideo | FailedVideo, config: RunConfig, encoder: Encoder, result: AcquireResult
) -> StatusRow:
    """Write a finished video's embeddings (or its failure marker) and say how it went."""
    video, key = item.video, item.key
    try:
        if isinstance(outcome, FailedVideo):
            if isinstance(outcome.error, PermanentDownloadError):
                marker = failure_marker(workdir, video, config)
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(outcome.error))
            raise outcome.error
        write_frame_embeddings(
            workdir.frames_path(key), video_id=video.video_id, times_s=outcome.times_s, embeddings=outcome.embeddings,
            model=encoder.identity.model_id, frames_key=key, fps=config.fps, start_s=video.start_s, end_s=video.end_s,
        )
    except Exception as exc:  # recorded with its real class; the other videos carry on
        result.failed += 1
        row = StatusRow.failed(ACQUIRE.name, video.video_id, exc, time.perf_counter() - outcome.started, key=key)
        row.attempts = max(getattr(exc, "attempts", 1), 1)
        return row
    fetched = item.fetched
    attempts = fetched.attempts if fetched is not None else 0
    result.downloaded += int(attempts > 0)
    result.decoded_frames += len(outcome.times_s)
    result.encoded_frames += len(outcome.embeddings)
    result.frames_keys[video.video_id] = key
    return StatusRow(ACQUIRE.name, video.video_id, "ok", key, message=item.note, attempts=max(attempts, 1), seconds=time.perf_counter() - outcome.started)
