-- left_out: one row per (run, scorer, labelled video) that is not counted in accuracy, and why: the stage
-- and error class of the video's failed status row (e.g. acquire / PermanentDownloadError, score /
-- MissingScriptError), else 'LabelNotScored' (scored, but the label has no score row) or 'NotScored'
-- (no score rows and no failure recorded: the run crashed or is still running). Counts per reason:
-- SELECT scorer, stage, reason, count(*) FROM left_out WHERE run_id = ? GROUP BY ALL.
CREATE OR REPLACE VIEW left_out AS
WITH p AS MATERIALIZED (
    SELECT run_id, video_id, scorer, true_rank FROM predictions
), pairs AS (
    SELECT run_id, scorer FROM run_scorers UNION SELECT DISTINCT run_id, scorer FROM p
), failed AS (
    SELECT run_id, item AS video_id,
           arg_max(stage, recorded_at) AS stage,
           arg_max(error_class, recorded_at) AS error_class,
           arg_max(message, recorded_at) AS message
    FROM status
    WHERE state = 'failed'
    GROUP BY run_id, item
)
SELECT v.run_id, rs.scorer, v.video_id, coalesce(v.domain, '(none)') AS domain, v.label,
       CASE WHEN f.video_id IS NOT NULL THEN f.stage WHEN p.video_id IS NOT NULL THEN 'score' END AS stage,
       coalesce(f.error_class, CASE WHEN p.video_id IS NOT NULL THEN 'LabelNotScored' ELSE 'NotScored' END) AS reason,
       coalesce(f.message,
                CASE WHEN p.video_id IS NOT NULL THEN 'scored, but the label ' || v.label || ' has no score row'
                     ELSE 'no score rows and no failure recorded (the run crashed or is still running)' END) AS message
FROM videos v
JOIN pairs rs USING (run_id)
LEFT JOIN p ON p.run_id = v.run_id AND p.video_id = v.video_id AND p.scorer = rs.scorer
LEFT JOIN failed f ON f.run_id = v.run_id AND f.video_id = v.video_id
WHERE v.label IS NOT NULL AND p.true_rank IS NULL;
