"""Acquire stage: decode and sample each video, embed its frames, store them under the frames key.

A video whose frames key already has a stored file is not decoded again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE

from actalign.config import RunConfig
from actalign.errors import VideoNotFoundError
from actalign.frames import sample_frames
from actalign.keys import file_fingerprint, stage_key
from actalign.manifest import VideoSpec
from actalign.models import Encoder
from storage.embeddings import write_frame_embeddings
from storage.records import StatusRow, write_status
from storage.workdir import Workdir
from tasks.plan import encoder_for

STAGE = "acquire"
VERSION = 1  # bump when decoding, sampling or embedding logic changes


@dataclass
class AcquireResult:
    frames_keys: dict[str, str] = field(default_factory=dict)  # video_id -> frames key, for videos that succeeded
    decoded_frames: int = 0
    encoded_frames: int = 0
    reused: int = 0
    failed: int = 0


def frames_key(video: VideoSpec, config: RunConfig, encoder: Encoder) -> str:
    """Depends on the video's content and segment, the sampling, and the exact checkpoint and precision."""
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
        },
        [video_fingerprint(video), encoder.model_id, encoder.fingerprint],
    )


def video_fingerprint(video: VideoSpec) -> str:
    try:
        return file_fingerprint(video.path)
    except OSError as exc:
        raise VideoNotFoundError(
            f"video {video.video_id!r}: cannot read {video.path} ({exc.strerror or exc}); fix its path in the manifest"
        ) from exc


def acquire_videos(workdir: Workdir, run_id: str, shard: str, videos: list[VideoSpec], config: RunConfig) -> AcquireResult:
    """Every video ends as a stored file or a failed status row; one bad video never stops the others."""
    encoder = encoder_for(config)
    result, rows = AcquireResult(), []
    for video in videos:
        started = time.perf_counter()
        try:
            key = frames_key(video, config, encoder)
            path = workdir.frames_path(key)
            if path.exists():
                result.reused += 1
                rows.append(StatusRow(STAGE, video.video_id, "skipped", key, message="reused from the store"))
            else:
                sampled = sample_frames(video.path, config.fps, encoder.image_size, video.start_s, video.end_s)
                embeddings = encoder.embed_images(sampled.frames)
                write_frame_embeddings(
                    path,
                    video_id=video.video_id,
                    times_s=sampled.times_s,
                    embeddings=embeddings,
                    model=encoder.model_id,
                    frames_key=key,
                )
                result.decoded_frames += len(sampled.frames)
                result.encoded_frames += len(embeddings)
                rows.append(StatusRow(STAGE, video.video_id, "ok", key, seconds=time.perf_counter() - started))
            result.frames_keys[video.video_id] = key
        except Exception as exc:  # any per-video failure is recorded, never fatal to the shard
            result.failed += 1
            rows.append(StatusRow.failed(STAGE, video.video_id, exc, time.perf_counter() - started))
    write_status(workdir, run_id, STAGE, shard, rows)
    return result


@task(name="acquire-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def acquire_shard(workdir: Workdir, run_id: str, shard: str, videos: list[VideoSpec], config: RunConfig) -> AcquireResult:
    return acquire_videos(workdir, run_id, shard, videos, config)
