-- accuracy_by_domain: accuracy per (run, scorer, domain) over labelled, scored videos, with
-- 95 % Wilson intervals; videos without a domain are grouped under '(none)'.
CREATE OR REPLACE VIEW accuracy_by_domain AS
SELECT run_id, scorer, domain, n,
       top1, wilson_lo(top1, n) AS top1_lo, wilson_hi(top1, n) AS top1_hi,
       top2, top3, random_top1
FROM (
    SELECT p.run_id, p.scorer, coalesce(v.domain, '(none)') AS domain, count(*) AS n,
           avg((p.true_rank <= 1)::DOUBLE) AS top1,
           avg((p.true_rank <= 2)::DOUBLE) AS top2,
           avg((p.true_rank <= 3)::DOUBLE) AS top3,
           avg(1.0 / p.n_candidates) AS random_top1
    FROM predictions p JOIN videos v USING (run_id, video_id)
    WHERE p.true_rank IS NOT NULL
    GROUP BY ALL
);
