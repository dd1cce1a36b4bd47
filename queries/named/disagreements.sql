-- disagreements: the run's videos where scorer_a and scorer_b disagree (different predictions, or only
-- one ranks the label first; ties count against the label), in that orientation: which one is right
-- (right = scorer_a, scorer_b, neither, or 'no label' for an unlabelled video), each one's prediction, label rank, label score, top score
-- and margin (label score minus the best other score). Right answers of scorer_b first, then of
-- scorer_a, then neither; by video_id within each.
-- params: run_id, scorer_a, scorer_b, limit
WITH a AS (SELECT * FROM predictions WHERE run_id = $run_id AND scorer = $scorer_a),
     b AS (SELECT * FROM predictions WHERE run_id = $run_id AND scorer = $scorer_b),
     pairs AS (
         SELECT a.video_id, a.label,
                CASE WHEN a.label IS NULL THEN 'no label' WHEN b.true_rank = 1 THEN $scorer_b WHEN a.true_rank = 1 THEN $scorer_a ELSE 'neither' END AS "right",
                a.predicted AS predicted_a, a.true_rank AS rank_a, a.true_score AS true_score_a, a.top_score AS top_score_a, a.margin AS margin_a,
                b.predicted AS predicted_b, b.true_rank AS rank_b, b.true_score AS true_score_b, b.top_score AS top_score_b, b.margin AS margin_b
         FROM a JOIN b USING (video_id)
         WHERE a.predicted IS DISTINCT FROM b.predicted OR (a.true_rank = 1) IS DISTINCT FROM (b.true_rank = 1)
     )
SELECT p.video_id, coalesce(v.domain, '(none)') AS domain, p.* EXCLUDE (video_id)
FROM pairs p JOIN videos v ON v.run_id = $run_id AND v.video_id = p.video_id
ORDER BY CASE p."right" WHEN $scorer_b THEN 0 WHEN $scorer_a THEN 1 ELSE 2 END, p.video_id
LIMIT $limit;
