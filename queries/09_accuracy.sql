-- accuracy: one row per (run, scorer) over the run's labelled videos: n labelled, n scored,
-- n_missing (labelled but not scored: failed videos), top-1/2/3 accuracy over the scored ones with
-- 95 % Wilson intervals, and the random baseline for the run's exact mix of candidate counts.
CREATE OR REPLACE VIEW accuracy AS
SELECT run_id, scorer, n_labelled, n, n_labelled - n AS n_missing,
       top1, wilson_lo(top1, n) AS top1_lo, wilson_hi(top1, n) AS top1_hi,
       top2, wilson_lo(top2, n) AS top2_lo, wilson_hi(top2, n) AS top2_hi,
       top3, wilson_lo(top3, n) AS top3_lo, wilson_hi(top3, n) AS top3_hi,
       random_top1
FROM (
    SELECT r.run_id, r.scorer,
           (SELECT count(*) FROM videos v WHERE v.run_id = r.run_id AND v.label IS NOT NULL) AS n_labelled,
           count(*) AS n,
           avg((true_rank <= 1)::DOUBLE) AS top1,
           avg((true_rank <= 2)::DOUBLE) AS top2,
           avg((true_rank <= 3)::DOUBLE) AS top3,
           avg(1.0 / n_candidates) AS random_top1
    FROM predictions r
    WHERE r.true_rank IS NOT NULL
    GROUP BY r.run_id, r.scorer
);
