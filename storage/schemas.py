"""Arrow schemas of every stored table: one place that says what each file holds."""

from __future__ import annotations

import pyarrow as pa

EMBEDDING = pa.list_(pa.float32())  # variable length: one folder may hold several models' dimensions

FRAME_EMBEDDINGS = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_idx", pa.int32()),
        ("t_s", pa.float64()),
        ("embedding", EMBEDDING),
        ("model", pa.string()),
        ("frames_key", pa.string()),
        ("fps", pa.float64()),  # the sampling: frames per second over the segment [start_s, end_s] (NULL: the whole video)
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
    ]
)

SCRIPTS = pa.schema(
    [
        ("class_id", pa.string()),
        ("kind", pa.string()),  # steps | attributes | subtexts (actalign.classes.TEXT_KINDS)
        ("domain", pa.string()),
        ("action", pa.string()),
        ("step_idx", pa.int32()),
        ("text", pa.string()),
        ("provider", pa.string()),
        ("script_key", pa.string()),
        ("model", pa.string()),  # LLM scripts: the model asked, the template and its hash, the request
        ("template", pa.string()),
        ("template_hash", pa.string()),
        ("request_key", pa.string()),
    ]
)

# One row per LLM request a run made (or found stored): the raw answer is kept, failed or not.
LLM_REQUESTS = pa.schema(
    [
        ("run_id", pa.string()),
        ("request_key", pa.string()),
        ("domain", pa.string()),
        ("actions", pa.list_(pa.string())),
        ("state", pa.string()),  # ok | failed
        ("model", pa.string()),
        ("response_model", pa.string()),
        ("template", pa.string()),
        ("response_format", pa.string()),
        ("requests", pa.int32()),  # HTTP answers received, follow-ups included
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("raw_response", pa.string()),
        ("error_class", pa.string()),
        ("message", pa.string()),
    ]
)

# kind is "step" (step_idx 0..K-1) or "name" (the class-name text, step_idx -1) used by mean-pool,
# or "attribute" / "subtext" (index 0..n-1) for the attribute-saliency and storyboard scorers.
STEP_EMBEDDINGS = pa.schema(
    [
        ("class_id", pa.string()),
        ("kind", pa.string()),
        ("step_idx", pa.int32()),
        ("text", pa.string()),
        ("embedding", EMBEDDING),
        ("model", pa.string()),
        ("embed_key", pa.string()),
    ]
)

VIDEOS = pa.schema(
    [
        ("run_id", pa.string()),
        ("video_id", pa.string()),
        ("source", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("domain", pa.string()),
        ("candidates", pa.list_(pa.string())),
        ("label", pa.string()),
    ]
)

SCORES = pa.schema(
    [
        ("run_id", pa.string()),
        ("video_id", pa.string()),
        ("candidate", pa.string()),
        ("scorer", pa.string()),
        ("score", pa.float64()),
        ("path_len", pa.int32()),
        ("frames_key", pa.string()),  # the stored inputs this score was computed from
        ("embed_key", pa.string()),
    ]
)

# The score cache, one file per frames key: a (video, candidate, scorer) pair scored once is reused
# by every run whose inputs give the same pair key (tasks/score.py).
PAIR_SCORES = pa.schema([("pair_key", pa.string()), ("score", pa.float64()), ("path_len", pa.int32())])

STATUS = pa.schema(
    [
        ("run_id", pa.string()),
        ("stage", pa.string()),
        ("item", pa.string()),
        ("state", pa.string()),  # ok | skipped (reused from the store) | failed
        ("key", pa.string()),
        ("error_class", pa.string()),
        ("message", pa.string()),
        ("attempts", pa.int32()),
        ("seconds", pa.float64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("state", pa.string()),  # running | completed | completed_with_failures | failed | interrupted
        ("model", pa.string()),
        ("model_trained", pa.bool_()),
        ("model_caveat", pa.string()),  # the banner of an untrained or toy model, null for a real checkpoint
        ("config", pa.string()),  # the full RunConfig as JSON
        ("stage_keys", pa.string()),  # JSON: model fingerprint, per-class script and embedding keys
        ("n_videos", pa.int32()),
        ("n_failed", pa.int32()),
        ("host", pa.string()),  # where the run's process ran: a dead pid there means the run was interrupted
        ("pid", pa.int32()),
    ]
)

# What a run (or `actalign status`) found before any work: one row per stage item, fresh or stale and why.
PLANS = pa.schema(
    [
        ("plan_id", pa.string()),
        ("run_id", pa.string()),  # null for `actalign status`
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("stage", pa.string()),  # acquire | scripts | step_embeddings | score
        ("item", pa.string()),  # video, script or (video/candidate/scorer) pair
        ("key", pa.string()),
        ("path", pa.string()),  # the stored output, relative to the workdir
        ("state", pa.string()),  # fresh | stale | error (no key: e.g. a missing video file)
        ("reason", pa.string()),  # why stale (or the error)
        ("settings", pa.string()),  # JSON: the stage's own settings, compared with the previous run's
    ]
)

# One row per arm of a sweep (storage.sweeps); a sweep's file adds one string column per varied setting.
SWEEP_ARMS = pa.schema(
    [
        ("sweep_id", pa.string()),
        ("sweep_name", pa.string()),
        ("arm_index", pa.int32()),
        ("arm", pa.string()),
        ("run_id", pa.string()),  # null until the arm's run starts
        ("state", pa.string()),  # pending | the run's state (completed, completed_with_failures, failed)
        ("is_baseline", pa.bool_()),
        ("scorer", pa.string()),  # the scorer the arm is judged by
        ("chosen", pa.bool_()),  # ranked first on the select split (set when the sweep's report is written)
        ("settings", pa.string()),  # JSON: the dotted fields this arm sets over the base
    ]
)
