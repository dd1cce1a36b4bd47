-- accuracy: one row per (run, scorer) of a run with labelled videos: n_labelled, n scored (label ranked),
-- n_missing (labelled but not scored: see left_out for why), top-1/2/3 accuracy over the scored videos
-- with 95 % Wilson intervals (clamped to [0, 1]), and the random baseline for the run's exact mix of candidate counts:
-- random_topk = the mean over scored videos of min(k, n_candidates) / n_candidates.
-- Ties count against the label (see predictions). Bootstrap intervals: queries.tables.accuracy_rows.
CREATE OR REPLACE VIEW accuracy AS
WITH stats AS MATERIALIZED (
    SELECT run_id, scorer,
           count(true_rank) AS n,
           avg((true_rank <= 1)::DOUBLE) AS top1,
           avg((true_rank <= 2)::DOUBLE) AS top2,
           avg((true_rank <= 3)::DOUBLE) AS top3,
           avg(random_topk(1, n_candidates)) FILTER (WHERE true_rank IS NOT NULL) AS random_top1,
           avg(random_topk(2, n_candidates)) FILTER (WHERE true_rank IS NOT NULL) AS random_top2,
           avg(random_topk(3, n_candidates)) FILTER (WHERE true_rank IS NOT NULL) AS random_top3
    FROM predictions
    GROUP BY run_id, scorer
), pairs AS (
    SELECT run_id, scorer FROM run_scorers UNION SELECT run_id, scorer FROM stats
), labelled AS (
    SELECT run_id, count(*) AS n_labelled FROM videos WHERE label IS NOT NULL GROUP BY run_id
), joined AS (
    SELECT p.run_id, p.scorer, l.n_labelled, coalesce(s.n, 0) AS n, s.top1, s.top2, s.top3,
           s.random_top1, s.random_top2, s.random_top3
    FROM pairs p JOIN labelled l USING (run_id) LEFT JOIN stats s USING (run_id, scorer)
)
SELECT run_id, scorer, n_labelled, n, n_labelled - n AS n_missing,
       top1, wilson_lo(top1, n) AS top1_lo, wilson_hi(top1, n) AS top1_hi,
       top2, wilson_lo(top2, n) AS top2_lo, wilson_hi(top2, n) AS top2_hi,
       top3, wilson_lo(top3, n) AS top3_lo, wilson_hi(top3, n) AS top3_hi,
       random_top1, random_top2, random_top3
FROM joined;
