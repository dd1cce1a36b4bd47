-- predictions: one row per (run, video, scorer): the best-scoring candidate (ties broken by class id)
-- and the rank of the true label. Ties count against the label: rank = 1 + the number of other
-- candidates scoring at least as high, so a tie is never a win. true_rank is NULL without a label, and
-- also when the label has no score row (such a video is not counted as scored). n_candidates counts the
-- candidates that have a score. margin = the label's score minus the best other candidate's score
-- (> 0 exactly when true_rank = 1; NULL without a label score or without another candidate).
CREATE OR REPLACE VIEW predictions AS
WITH per_video AS (
    SELECT s.run_id, s.video_id, s.scorer, any_value(v.label) AS label,
           first(s.candidate ORDER BY s.score DESC, s.candidate) AS predicted,
           max(s.score) AS top_score,
           max(s.score) FILTER (WHERE s.candidate = v.label) AS true_score,
           max(s.score) FILTER (WHERE s.candidate <> v.label) AS best_other,
           list(s.score) FILTER (WHERE s.candidate <> v.label) AS other_scores,
           count(*) AS n_candidates
    FROM scores s JOIN videos v USING (run_id, video_id)
    GROUP BY s.run_id, s.video_id, s.scorer
)
SELECT run_id, video_id, scorer, predicted, label, top_score, true_score, n_candidates,
       CASE WHEN true_score IS NOT NULL
            THEN 1 + coalesce(len(list_filter(other_scores, lambda x: x >= true_score)), 0) END AS true_rank,
       true_score - best_other AS margin
FROM per_video;
