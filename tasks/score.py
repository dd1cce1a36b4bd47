"""Score stage: every scorer on every (video, candidate) pair of a shard, written as one file."""

from __future__ import annotations

import time

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from actalign.config import RunConfig
from actalign.manifest import VideoSpec
from actalign.scorers import Calibration, ClassTexts, make_scorer
from storage import schemas
from storage.embeddings import read_frame_embeddings, read_text_embeddings
from storage.parquet import write_atomic
from storage.records import StatusRow, write_status
from storage.workdir import Workdir

STAGE = "score"


class MissingScriptError(Exception):
    """A candidate of this video has no embedded script (its class failed in the text stage)."""


def score_videos(
    workdir: Workdir,
    run_id: str,
    shard: str,
    videos: list[VideoSpec],
    frames_keys: dict[str, str],
    embed_keys: dict[str, dict[str, dict[str, str]]],
    calibration: Calibration,
    config: RunConfig,
) -> int:
    """Score the shard's acquired videos; ``embed_keys``: video -> candidate -> text kind -> embedding key.
    Returns how many videos failed here."""
    scorers = [make_scorer(name, smoothing=config.smoothing) for name in config.scorers]
    kinds = config.text_kinds()
    texts: dict[tuple[str, ...], ClassTexts] = {}  # by embedding keys: read each stored file once per shard
    records, rows, failed = [], [], 0
    for video in (v for v in videos if v.video_id in frames_keys):
        started = time.perf_counter()
        try:
            keys = embed_keys.get(video.video_id, {})
            missing = [c for c in video.candidates if any(kind not in keys.get(c, {}) for kind in kinds)]
            if missing:
                raise MissingScriptError(f"video {video.video_id!r}: no embedded script for candidate(s) {missing}; see the scripts and step_embeddings status rows")
            frames_key = frames_keys[video.video_id]
            frames = read_frame_embeddings(workdir.frames_path(frames_key))
            for candidate in video.candidates:
                if _texts_key(keys[candidate], kinds) not in texts:
                    texts[_texts_key(keys[candidate], kinds)] = class_texts(workdir, candidate, keys[candidate])
            candidates = [texts[_texts_key(keys[c], kinds)] for c in video.candidates]
            video_records = [
                {
                    "run_id": run_id,
                    "video_id": video.video_id,
                    "candidate": c.class_id,
                    "scorer": scorer.name,
                    "score": s.score,
                    "path_len": s.path_len,
                    "frames_key": frames_key,
                    "embed_key": keys[c.class_id]["steps"],
                }
                for scorer in scorers
                for c, s in zip(candidates, scorer.score_many(frames, candidates, calibration))
            ]
            records.extend(video_records)
            rows.append(StatusRow(STAGE, video.video_id, "ok", seconds=time.perf_counter() - started))
        except Exception as exc:  # a broken stored file or missing script fails this video only
            failed += 1
            rows.append(StatusRow.failed(STAGE, video.video_id, exc, time.perf_counter() - started))
    write_atomic(pa.Table.from_pylist(records, schema=schemas.SCORES), workdir.scores_path(run_id, shard))
    write_status(workdir, run_id, STAGE, shard, rows)
    return failed


def _texts_key(keys: dict[str, str], kinds: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(keys[kind] for kind in kinds)


def class_texts(workdir: Workdir, class_id: str, keys: dict[str, str]) -> ClassTexts:
    """A candidate's embedded texts from the stored files of each kind it has."""
    stored = {kind: read_text_embeddings(workdir.step_embeddings_path(key)) for kind, key in keys.items()}
    return ClassTexts(
        class_id,
        stored["steps"]["step"],
        stored["steps"]["name"][0],
        attributes=stored["attributes"]["attribute"] if "attributes" in stored else None,
        subtexts=stored["subtexts"]["subtext"] if "subtexts" in stored else None,
    )


@task(name="score-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def score_shard(
    workdir: Workdir,
    run_id: str,
    shard: str,
    videos: list[VideoSpec],
    frames_keys: dict[str, str],
    embed_keys: dict[str, dict[str, dict[str, str]]],
    calibration: Calibration,
    config: RunConfig,
) -> int:
    return score_videos(workdir, run_id, shard, videos, frames_keys, embed_keys, calibration, config)
