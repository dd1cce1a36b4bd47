"""Alignment pictures of one video: for each candidate, the step x frame affinities and the path.

Everything is read back from what the run scored: the frames and embedding
keys of its score rows, the checkpoint's calibration and the smoothing from
its run record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from actalign.align import align
from actalign.caveats import model_label
from actalign.errors import InputError
from actalign.ids import file_stem
from actalign.plots import DEFAULT_DPI, plot_alignment
from actalign.queries.runner import run_sql, sql_command
from actalign.scorers import ALIGNMENT_MODES
from actalign.storage.embeddings import read_frame_embeddings, read_frame_times, read_step_texts, read_text_embeddings
from actalign.storage.safe_paths import contained
from actalign.storage.workdir import Workdir


@dataclass(frozen=True)
class VideoInRun:
    run_id: str
    video_id: str
    label: str | None
    frames_key: str
    embed_keys: dict[str, str]  # candidate -> embedding key, in the video's candidate order
    run_keys: dict
    config: dict
    trained: bool
    caveat: str | None
    model: str


def find_video(workdir: Workdir, video_id: str, run_id: str | None, scorer: str) -> VideoInRun:
    """The video as scored by ``scorer`` in the given run, or in the latest run that scored it."""
    rows = run_sql(
        workdir,
        """SELECT s.run_id, any_value(v.label), any_value(s.frames_key), any_value(v.candidates),
                  map_from_entries(list({'k': s.candidate, 'v': s.embed_key})), any_value(r.stage_keys),
                  any_value(r.config), any_value(r.model_trained), any_value(r.model_caveat), any_value(r.model)
           FROM scores s JOIN videos v USING (run_id, video_id) JOIN runs r USING (run_id)
           WHERE s.video_id = $1 AND s.scorer = $3 AND ($2 IS NULL OR s.run_id = $2)
           GROUP BY s.run_id ORDER BY any_value(r.started_at) DESC LIMIT 1""",
        [video_id, run_id, scorer],
    ).rows
    if not rows:
        where = f"run {run_id}" if run_id else "any run"
        raise InputError(
            f"video {video_id!r} has no {scorer} scores in {where} of {workdir.root}; "
            "check the id with:\n  " + sql_command(workdir.root, "SELECT run_id, video_id, scorer FROM predictions")
        )
    run, label, frames_key, candidates, keys, stage_keys, config, trained, caveat, model = rows[0]
    ordered = {c: keys[c] for c in candidates if c in keys}
    return VideoInRun(run, video_id, label, frames_key, ordered, json.loads(stage_keys), json.loads(config), trained, caveat, model)


def predicted_class(workdir: Workdir, video: VideoInRun, scorer: str) -> str | None:
    rows = run_sql(
        workdir,
        "SELECT predicted FROM predictions WHERE run_id = $1 AND video_id = $2 AND scorer = $3",
        [video.run_id, video.video_id, scorer],
    ).rows
    return rows[0][0] if rows else None


def explain_video(
    workdir: Workdir,
    video_id: str,
    run_id: str | None = None,
    scorer: str = "actalign",
    out_dir: Path | None = None,
    *,
    fmt: str = "png",
    dpi: int = DEFAULT_DPI,
) -> list[Path]:
    """Write one PNG per candidate, named by ``file_stem`` of its id and never outside ``out_dir`` (default:
    ``runs/<run>/explain/<file_stem(video_id)>``, never outside the workdir); returns their paths."""
    if scorer not in ALIGNMENT_MODES:
        raise InputError(f"scorer {scorer!r} has no alignment to draw; choose one of {', '.join(ALIGNMENT_MODES)}")
    video = find_video(workdir, video_id, run_id, scorer)
    model = video.run_keys.get("model", {})
    if "logit_scale" not in model:
        raise InputError(f"run {video.run_id} was recorded without the checkpoint's calibration (an older actalign); run it again to draw it")
    frames_path = workdir.frames_path(video.frames_key)
    frames = read_frame_embeddings(frames_path)
    times = read_frame_times(frames_path)
    predicted = predicted_class(workdir, video, scorer)
    out_dir = out_dir or contained(workdir.root, workdir.run_dir(video.run_id) / "explain" / file_stem(video_id))
    results = {}
    for candidate, embed_key in video.embed_keys.items():
        results[candidate] = align(
            frames,
            read_text_embeddings(workdir.step_embeddings_path(embed_key))["step"],
            logit_scale=model["logit_scale"],
            logit_bias=model["logit_bias"],
            smooth=video.config.get("smoothing", 0),
            mode=ALIGNMENT_MODES[scorer],
        )
    scores = score_labels([float(r.score) for r in results.values()])
    written = []
    for (candidate, result), score in zip(results.items(), scores):
        marks = "+".join(m for m, hit in (("true", candidate == video.label), ("predicted", candidate == predicted)) if hit) or None
        written.append(
            plot_alignment(
                result.affinity,
                [(int(k), int(t)) for k, t in result.path],
                read_step_texts(workdir.step_embeddings_path(video.embed_keys[candidate])),
                times,
                f"{candidate} - {scorer} score {score}",
                contained(out_dir, out_dir / f"{file_stem(candidate)}.{fmt}"),
                subtitle=f"video {video_id} · run {video.run_id} · true: {video.label or '?'} · predicted: {predicted or '?'} · model: {video.model} ({model_label(video.trained, video.caveat)})",
                highlight=marks,
                dpi=dpi,
            )
        )
    return written


def score_labels(scores: list[float], *, least: int = 4, most: int = 12) -> list[str]:
    """The scores printed with the fewest significant digits (at least ``least``) that tell different
    scores apart, so that no two candidates' titles read the same (or ``0.0000``) unless their scores are equal."""
    for digits in range(least, most + 1):
        labels = [f"{s:.{digits}g}" for s in scores]
        if len(set(labels)) == len(set(scores)):
            return labels
    return [f"{s:.{most}g}" for s in scores]
