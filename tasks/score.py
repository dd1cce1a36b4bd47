"""Score stage: every scorer on every (video, candidate) pair of a shard, written as one file.

A pair's score is cached under its pair key (scorer, smoothing, the checkpoint's
calibration, the frames key and the candidate's embedding keys), one cache file
per video. A run scores only the pairs whose key is new: after a prompt edit,
only the pairs of the regenerated scripts; after adding a scorer, only its pairs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from actalign.config import RunConfig
from actalign.manifest import VideoSpec
from actalign.registry import ModelIdentity
from actalign.scorers import Calibration, ClassTexts, Video, make_scorer
from actalign.stages import SCORE, pair_key
from actalign.storage import schemas
from actalign.storage.embeddings import read_frame_embeddings, read_pair_scores, read_text_embeddings, write_pair_scores
from actalign.storage.integrity import Stored, check
from actalign.storage.parquet import write_atomic
from actalign.storage.records import StatusRow, write_status
from actalign.storage.workdir import Workdir
from actalign.threads import ThreadBudget, apply, budget_for


@dataclass
class ScoreResult:
    failed: int = 0  # videos
    scored_pairs: int = 0  # (video, candidate, scorer) pairs computed by this run
    reused_pairs: int = 0  # pairs taken from the score cache
    threads: ThreadBudget | None = None  # the threads each scoring body of this process was held to


class MissingScriptError(Exception):
    """A candidate of this video has no embedded script (its class failed in the text stage)."""


def score_videos(
    workdir: Workdir,
    run_id: str,
    shard: str,
    videos: list[VideoSpec],
    frames_keys: dict[str, str],
    embed_keys: dict[str, dict[str, dict[str, str]]],
    model: ModelIdentity,
    config: RunConfig,
) -> ScoreResult:
    """Score the shard's acquired videos; ``embed_keys``: video -> candidate -> text kind -> embedding key."""
    scorers = [make_scorer(name, smoothing=config.smoothing) for name in config.scorers]
    kinds = config.text_kinds()
    texts: dict[tuple[str, ...], ClassTexts] = {}  # by embedding keys: read each stored file once per shard
    records, rows, result = [], [], ScoreResult(threads=apply(budget_for(config.workers)))  # --workers shards score at once
    for video in (v for v in videos if v.video_id in frames_keys):
        started = time.perf_counter()
        try:
            keys = embed_keys.get(video.video_id, {})
            missing = [c for c in video.candidates if any(kind not in keys.get(c, {}) for kind in kinds)]
            if missing:
                raise MissingScriptError(f"video {video.video_id!r}: no embedded script for candidate(s) {missing}; see the scripts and step_embeddings status rows")
            frames_key = frames_keys[video.video_id]
            computed_before, reused_before = result.scored_pairs, result.reused_pairs
            scores = _score_pairs(workdir, video, frames_key, keys, kinds, scorers, model, config, texts, result)
            records += [
                {
                    "run_id": run_id,
                    "video_id": video.video_id,
                    "candidate": candidate,
                    "scorer": scorer.name,
                    "score": score,
                    "path_len": path_len,
                    "frames_key": frames_key,
                    "embed_key": keys[candidate]["steps"],
                }
                for (scorer, candidate), (score, path_len) in scores.items()
            ]
            seconds = time.perf_counter() - started
            computed, reused = result.scored_pairs - computed_before, result.reused_pairs - reused_before
            if reused and not computed:  # every pair reused: the word the other stages use for reuse
                rows.append(StatusRow(SCORE.name, video.video_id, "skipped", frames_key, message="reused from the store", seconds=seconds))
            else:
                rows.append(StatusRow(SCORE.name, video.video_id, "ok", seconds=seconds))
        except Exception as exc:  # a broken stored file or missing script fails this video only
            result.failed += 1
            rows.append(StatusRow.failed(SCORE.name, video.video_id, exc, time.perf_counter() - started))
    write_atomic(pa.Table.from_pylist(records, schema=schemas.SCORES), workdir.scores_path(run_id, shard))
    write_status(workdir, run_id, SCORE.name, shard, rows)
    return result


def score_settled_shards(
    workdir: Workdir,
    run_id: str,
    shards: dict[str, list[VideoSpec]],
    frames_keys: dict[str, str],
    embed_keys: dict[str, dict[str, dict[str, str]]],
    model: ModelIdentity,
    config: RunConfig,
) -> dict[str, ScoreResult]:
    """``score_videos`` for each shard whose every pair the plan found cached, in one task run (see
    ``acquire_settled_shards``); the keys cover the videos of all of them."""
    return {name: score_videos(workdir, run_id, name, videos, frames_keys, embed_keys, model, config) for name, videos in shards.items()}


def _score_pairs(
    workdir: Workdir,
    video: VideoSpec,
    frames_key: str,
    keys: dict[str, dict[str, str]],
    kinds: tuple[str, ...],
    scorers: list,
    model: ModelIdentity,
    config: RunConfig,
    texts: dict[tuple[str, ...], ClassTexts],
    result: ScoreResult,
) -> dict[tuple[str, str], tuple[float, int | None]]:
    """(scorer, candidate) -> (score, path_len): from the cache, computing only the pairs it lacks.

    The frames are read and checked once, and the scorers share one ``Video``: one affinity
    per candidate for every alignment scorer.
    """
    cache_path = workdir.pair_scores_path(frames_key)
    cached = read_pair_scores(cache_path) if check(workdir, cache_path) is Stored.OK else {}
    new: dict[str, tuple[float, int | None]] = {}
    frames: Video | None = None
    scores = {}
    for scorer in scorers:
        wanted = {c: pair_key(scorer.name, config, model, frames_key, keys[c]) for c in video.candidates}
        todo = [c for c, key in wanted.items() if key not in cached]
        if todo:
            if frames is None:
                frames = Video(read_frame_embeddings(workdir.frames_path(frames_key)), Calibration(model.logit_scale, model.logit_bias))
            for c in todo:
                if _texts_key(keys[c], kinds) not in texts:
                    texts[_texts_key(keys[c], kinds)] = class_texts(workdir, c, keys[c])
            computed = scorer.score_video(frames, [texts[_texts_key(keys[c], kinds)] for c in todo])
            new.update({wanted[c]: (s.score, s.path_len) for c, s in zip(todo, computed)})
        result.scored_pairs += len(todo)
        result.reused_pairs += len(wanted) - len(todo)
        scores.update({(scorer, c): cached.get(key) or new[key] for c, key in wanted.items()})
    if new:
        write_pair_scores(cache_path, {**cached, **new})
    return scores


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
