-- accuracy_by_domain: accuracy per (run, scorer, domain) over labelled, scored videos, with 95 % Wilson
-- intervals and the random baseline, as in accuracy; videos without a domain are grouped under '(none)'.
-- n_labelled and n_missing (labelled but not scored) come last, after the older columns.
CREATE OR REPLACE VIEW accuracy_by_domain AS
WITH stats AS MATERIALIZED (
    SELECT p.run_id, p.scorer, coalesce(v.domain, '(none)') AS domain,
           count(p.true_rank) AS n,
           avg((p.true_rank <= 1)::DOUBLE) AS top1,
           avg((p.true_rank <= 2)::DOUBLE) AS top2,
           avg((p.true_rank <= 3)::DOUBLE) AS top3,
           avg(random_topk(1, p.n_candidates)) FILTER (WHERE p.true_rank IS NOT NULL) AS random_top1,
           avg(random_topk(2, p.n_candidates)) FILTER (WHERE p.true_rank IS NOT NULL) AS random_top2,
           avg(random_topk(3, p.n_candidates)) FILTER (WHERE p.true_rank IS NOT NULL) AS random_top3
    FROM predictions p JOIN videos v USING (run_id, video_id)
    GROUP BY ALL
), pairs AS (
    SELECT run_id, scorer FROM run_scorers UNION SELECT run_id, scorer FROM stats
), labelled AS (
    SELECT run_id, coalesce(domain, '(none)') AS domain, count(*) AS n_labelled
    FROM videos WHERE label IS NOT NULL GROUP BY ALL
), joined AS (
    SELECT p.run_id, p.scorer, l.domain, l.n_labelled, coalesce(s.n, 0) AS n, s.top1, s.top2, s.top3,
           s.random_top1, s.random_top2, s.random_top3
    FROM pairs p JOIN labelled l USING (run_id) LEFT JOIN stats s USING (run_id, scorer, domain)
)
SELECT run_id, scorer, domain, n,
       top1, wilson_lo(top1, n) AS top1_lo, wilson_hi(top1, n) AS top1_hi,
       top2, top3, random_top1,
       wilson_lo(top2, n) AS top2_lo, wilson_hi(top2, n) AS top2_hi,
       wilson_lo(top3, n) AS top3_lo, wilson_hi(top3, n) AS top3_hi,
       random_top2, random_top3, n_labelled, n_labelled - n AS n_missing
FROM joined;
