-- left_out_reasons: why labelled videos of the run are not counted in accuracy: videos per (stage,
-- reason), the scorers affected, and one example message (from the left_out view).
-- params: run_id
SELECT stage, reason, count(DISTINCT video_id) AS videos, string_agg(DISTINCT scorer, ', ' ORDER BY scorer) AS scorers,
       min(message) AS example
FROM left_out WHERE run_id = $run_id
GROUP BY stage, reason
ORDER BY videos DESC, reason;
