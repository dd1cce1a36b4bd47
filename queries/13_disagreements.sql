-- disagreements: one row per (run, video, pair of scorers scorer_a < scorer_b) where the two scorers
-- predict different classes or only one of them ranks the label first (ties count against the label),
-- with each scorer's prediction, label rank, label score, top score and margin (label score minus the
-- best other score). queries/named/disagreements.sql orders one chosen pair.
CREATE OR REPLACE VIEW disagreements AS
SELECT a.run_id, a.video_id, coalesce(v.domain, '(none)') AS domain, a.label,
       a.scorer AS scorer_a, b.scorer AS scorer_b,
       a.predicted AS predicted_a, b.predicted AS predicted_b,
       a.true_rank AS rank_a, b.true_rank AS rank_b,
       a.true_score AS true_score_a, b.true_score AS true_score_b,
       a.top_score AS top_score_a, b.top_score AS top_score_b,
       a.margin AS margin_a, b.margin AS margin_b
FROM predictions a
JOIN predictions b ON b.run_id = a.run_id AND b.video_id = a.video_id AND a.scorer < b.scorer
JOIN videos v ON v.run_id = a.run_id AND v.video_id = a.video_id
WHERE a.predicted IS DISTINCT FROM b.predicted OR (a.true_rank = 1) IS DISTINCT FROM (b.true_rank = 1);
