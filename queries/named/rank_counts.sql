-- rank_counts: how many scored videos of each (run, scorer, domain) ranked the true label 1st, 2nd, 3rd,
-- or lower (bucket 1, 2, 3, 4). Everything the bootstrap of top-1/2/3 needs (queries/stats.py).
-- params: runs (a list of run ids)
SELECT p.run_id, p.scorer, coalesce(v.domain, '(none)') AS domain, least(p.true_rank, 4) AS bucket, count(*) AS videos
FROM predictions p JOIN videos v USING (run_id, video_id)
WHERE list_contains($runs::VARCHAR[], p.run_id) AND p.true_rank IS NOT NULL
GROUP BY ALL
ORDER BY ALL;
