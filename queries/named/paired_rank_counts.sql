-- paired_rank_counts: for each (run, scorer) of the given runs, the videos that it and the baseline
-- (run, scorer) both scored, paired by video_id (and the same label), counted by the pair of label-rank
-- buckets (1, 2, 3, 4 = lower). Everything the paired bootstrap of top-k differences needs.
-- params: runs (a list of run ids), baseline_run, baseline_scorer
WITH p AS MATERIALIZED (
    SELECT run_id, scorer, video_id, label, least(true_rank, 4) AS bucket
    FROM predictions
    WHERE (list_contains($runs::VARCHAR[], run_id) OR run_id = $baseline_run) AND true_rank IS NOT NULL
)
SELECT p.run_id, p.scorer, p.bucket, b.bucket AS baseline_bucket, count(*) AS videos
FROM p JOIN p AS b ON b.video_id = p.video_id AND b.label = p.label
WHERE list_contains($runs::VARCHAR[], p.run_id) AND b.run_id = $baseline_run AND b.scorer = $baseline_scorer
GROUP BY ALL
ORDER BY ALL;
