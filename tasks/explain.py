"""Alignment pictures of one video: for each candidate, the step x frame affinities and the path.

Everything is read back from the store and the run record (frames key from the
acquire status row, embedding keys and the checkpoint's calibration from the
run's stage keys), so a picture shows exactly what the run scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from actalign.align import align
from actalign.errors import InputError
from actalign.plots import plot_alignment
from actalign.scorers import ALIGNMENT_MODES
from queries.runner import run_sql
from storage.embeddings import read_frame_embeddings, read_frame_times, read_step_texts, read_text_embeddings
from storage.workdir import Workdir


@dataclass(frozen=True)
class VideoInRun:
    run_id: str
    video_id: str
    candidates: list[str]
    label: str | None
    frames_key: str
    run_keys: dict
    config: dict
    trained: bool
    model: str


def find_video(workdir: Workdir, video_id: str, run_id: str | None) -> VideoInRun:
    """The video in the given run, or in the latest run that scored it."""
    rows = run_sql(
        workdir,
        """SELECT v.run_id, v.candidates, v.label, s.key, r.stage_keys, r.config, r.model_trained, r.model
           FROM videos v
           JOIN status s ON s.run_id = v.run_id AND s.item = v.video_id AND s.stage = 'acquire' AND s.state <> 'failed'
           JOIN runs r ON r.run_id = v.run_id
           WHERE v.video_id = $1 AND ($2 IS NULL OR v.run_id = $2)
           ORDER BY r.started_at DESC LIMIT 1""",
        [video_id, run_id],
    ).rows
    if not rows:
        where = f"run {run_id}" if run_id else "any run"
        raise InputError(f"video {video_id!r} has no stored frames in {where} of {workdir.root}; check the id with: actalign sql \"SELECT run_id, video_id FROM videos\"")
    run, candidates, label, key, stage_keys, config, trained, model = rows[0]
    return VideoInRun(run, video_id, list(candidates), label, key, json.loads(stage_keys), json.loads(config), trained, model)


def predicted_class(workdir: Workdir, video: VideoInRun, scorer: str) -> str | None:
    rows = run_sql(
        workdir,
        "SELECT predicted FROM predictions WHERE run_id = $1 AND video_id = $2 AND scorer = $3",
        [video.run_id, video.video_id, scorer],
    ).rows
    return rows[0][0] if rows else None


def explain_video(workdir: Workdir, video_id: str, run_id: str | None = None, scorer: str = "actalign", out_dir: Path | None = None) -> list[Path]:
    """Write one PNG per candidate; returns their paths."""
    if scorer not in ALIGNMENT_MODES:
        raise InputError(f"scorer {scorer!r} has no alignment to draw; choose one of {', '.join(ALIGNMENT_MODES)}")
    video = find_video(workdir, video_id, run_id)
    model = video.run_keys.get("model", {})
    if "logit_scale" not in model:
        raise InputError(f"run {video.run_id} was recorded without the checkpoint's calibration (an older actalign); run it again to draw it")
    frames_path = workdir.frames_path(video.frames_key)
    frames = read_frame_embeddings(frames_path)
    times = read_frame_times(frames_path)
    predicted = predicted_class(workdir, video, scorer)
    out_dir = out_dir or workdir.run_dir(video.run_id) / "explain" / video_id
    untrained = "" if video.trained else " (UNTRAINED: meaningless)"
    written = []
    for candidate in video.candidates:
        embed_key = video.run_keys["step_embeddings"].get(candidate)
        if embed_key is None:
            continue  # the class failed in the text stage; the status table says why
        texts_path = workdir.step_embeddings_path(embed_key)
        steps, _ = read_text_embeddings(texts_path)
        result = align(
            frames,
            steps,
            logit_scale=model["logit_scale"],
            logit_bias=model["logit_bias"],
            smooth=video.config.get("smoothing", 0),
            mode=ALIGNMENT_MODES[scorer],
        )
        marks = "+".join(m for m, hit in (("true", candidate == video.label), ("predicted", candidate == predicted)) if hit) or None
        written.append(
            plot_alignment(
                result.affinity,
                [(int(k), int(t)) for k, t in result.path],
                read_step_texts(texts_path),
                times,
                f"{candidate} - {scorer} score {result.score:.4f}",
                out_dir / f"{candidate}.png",
                subtitle=f"video {video_id} · run {video.run_id} · true: {video.label or '?'} · predicted: {predicted or '?'} · model: {video.model}{untrained}",
                highlight=marks,
            )
        )
    return written
