-- predictions: one row per (run, video, scorer): the best-scoring candidate (ties broken by class id)
-- and the rank of the true label. Ties count against the label: rank = 1 + the number of other
-- candidates scoring at least as high, so a tie is never a win. true_rank is NULL without a label.
CREATE OR REPLACE VIEW predictions AS
WITH scored AS (
    SELECT s.*, v.label
    FROM scores s JOIN videos v USING (run_id, video_id)
), per_video AS (
    SELECT run_id, video_id, scorer, any_value(label) AS label,
           first(candidate ORDER BY score DESC, candidate) AS predicted,
           max(score) AS top_score,
           max(score) FILTER (WHERE candidate = label) AS true_score,
           count(*) AS n_candidates
    FROM scored
    GROUP BY ALL
)
SELECT p.run_id, p.video_id, p.scorer, p.predicted, p.label, p.top_score, p.true_score, p.n_candidates,
       CASE WHEN p.true_score IS NULL THEN NULL
            ELSE 1 + (SELECT count(*) FROM scored o
                      WHERE o.run_id = p.run_id AND o.video_id = p.video_id AND o.scorer = p.scorer
                        AND o.candidate <> p.label AND o.score >= p.true_score)
       END AS true_rank
FROM per_video p;
