"""Acquire stage: fetch (remote videos), decode and sample, obfuscate, embed, store under the frames key.

A video whose frames key already has a stored file is neither downloaded nor
decoded again. The key of a remote video is its download's media key (source,
segment, resolution cap), so a cached re-run never touches the network; a local
file is keyed by its content. A download found permanently unavailable is
remembered (``media/failed/<media key>.txt``) and not tried again unless the
run sets ``download.retry_failed``; transient failures are retried by the next run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from actalign.config import RunConfig
from actalign.download import Downloaded, FetchRequest, PermanentDownloadError, fetch_many, is_remote, media_key
from actalign.errors import ItemError, VideoNotFoundError
from actalign.frames import sample_frames
from actalign.keys import file_fingerprint, stage_key
from actalign.manifest import VideoSpec
from actalign.models import Encoder
from storage.embeddings import write_frame_embeddings
from storage.records import StatusRow, write_status
from storage.workdir import Workdir
from tasks.plan import encoder_for

STAGE = "acquire"
VERSION = 2  # bump when fetching, decoding, sampling, obfuscation or embedding logic changes


@dataclass
class AcquireResult:
    frames_keys: dict[str, str] = field(default_factory=dict)  # video_id -> frames key, for videos that succeeded
    decoded_frames: int = 0
    encoded_frames: int = 0
    downloaded: int = 0  # videos fetched over the network by this run
    reused: int = 0
    failed: int = 0


def source_fingerprint(video: VideoSpec, config: RunConfig) -> str:
    """Remote: the media key of its download; local: the file's content."""
    if is_remote(video.source):
        return media_key(video.source, video.start_s, video.end_s, config.download.options())
    try:
        return file_fingerprint(video.source)
    except OSError as exc:
        raise VideoNotFoundError(
            f"video {video.video_id!r}: cannot read {video.source} ({exc.strerror or exc}); fix its path in the manifest"
        ) from exc


def frames_key(video: VideoSpec, config: RunConfig, encoder: Encoder) -> str:
    """Depends on the video and segment, the sampling, the obfuscation, and the exact checkpoint and precision."""
    return stage_key(
        STAGE,
        VERSION,
        {
            "video_id": video.video_id,
            "start_s": video.start_s,
            "end_s": video.end_s,
            "fps": config.fps,
            "image_size": list(encoder.image_size),
            "dtype": encoder.dtype_name,
            "obfuscation": video.obfuscation,
        },
        [source_fingerprint(video, config), encoder.model_id, encoder.fingerprint],
    )


def failure_marker(workdir: Workdir, video: VideoSpec, config: RunConfig) -> Path:
    return workdir.media_dir / "failed" / f"{media_key(video.source, video.start_s, video.end_s, config.download.options())}.txt"


def acquire_videos(workdir: Workdir, run_id: str, shard: str, videos: list[VideoSpec], config: RunConfig) -> AcquireResult:
    """Every video ends as a stored file or a failed status row; one bad video never stops the others."""
    encoder = encoder_for(config)
    result, rows, todo = AcquireResult(), [], {}
    for video in videos:
        key = None
        try:
            key = frames_key(video, config, encoder)
            if workdir.frames_path(key).exists():
                result.reused += 1
                result.frames_keys[video.video_id] = key
                rows.append(StatusRow(STAGE, video.video_id, "skipped", key, message="reused from the store"))
            elif is_remote(video.source) and failure_marker(workdir, video, config).exists() and not config.download.retry_failed:
                raise PermanentDownloadError(
                    failure_marker(workdir, video, config).read_text() + " (recorded by an earlier run; --retry-failed tries again)"
                )
            else:
                todo[video.video_id] = (video, key)
        except Exception as exc:  # any per-video failure is recorded, never fatal to the shard
            result.failed += 1
            rows.append(StatusRow.failed(STAGE, video.video_id, exc, key=key))
    requests = [FetchRequest(v.source, v.start_s, v.end_s) for v, _ in todo.values()]
    fetched = fetch_many(requests, workdir.media_dir, config.download.options(), config.download.concurrency)
    for (video, key), download in zip(todo.values(), fetched):
        rows.append(_embed_one(workdir, video, key, download, config, encoder, result))
    write_status(workdir, run_id, STAGE, shard, rows)
    return result


def _embed_one(
    workdir: Workdir, video: VideoSpec, key: str, download: Downloaded | ItemError, config: RunConfig, encoder: Encoder, result: AcquireResult
) -> StatusRow:
    started = time.perf_counter()
    try:
        if isinstance(download, ItemError):
            if isinstance(download, PermanentDownloadError):
                marker = failure_marker(workdir, video, config)
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(download))
            raise download
        end = download.offset_s + (video.end_s - (video.start_s or 0.0)) if video.end_s is not None else None
        sampled = sample_frames(download.path, config.fps, encoder.image_size, download.offset_s, end, obfuscation=video.obfuscation)
        embeddings = encoder.embed_images(sampled.frames)
        write_frame_embeddings(
            workdir.frames_path(key), video_id=video.video_id, times_s=sampled.times_s, embeddings=embeddings, model=encoder.model_id, frames_key=key
        )
    except Exception as exc:  # recorded with its real class; the other videos carry on
        result.failed += 1
        row = StatusRow.failed(STAGE, video.video_id, exc, time.perf_counter() - started, key=key)
        row.attempts = max(getattr(exc, "attempts", 1), 1)
        return row
    result.downloaded += int(download.attempts > 0)
    result.decoded_frames += len(sampled.frames)
    result.encoded_frames += len(embeddings)
    result.frames_keys[video.video_id] = key
    return StatusRow(STAGE, video.video_id, "ok", key, attempts=max(download.attempts, 1), seconds=time.perf_counter() - started)


@task(name="acquire-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def acquire_shard(workdir: Workdir, run_id: str, shard: str, videos: list[VideoSpec], config: RunConfig) -> AcquireResult:
    return acquire_videos(workdir, run_id, shard, videos, config)
