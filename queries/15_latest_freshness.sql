-- latest_freshness: per stage, the latest plan's counts and reasons (after `actalign status`: what a run would do).
CREATE OR REPLACE VIEW latest_freshness AS
SELECT stage, state, reason, count(*) AS items
FROM freshness
WHERE plan_id = (SELECT arg_max(plan_id, created_at) FROM freshness)
GROUP BY stage, state, reason
ORDER BY CASE stage WHEN 'acquire' THEN 1 WHEN 'scripts' THEN 2 WHEN 'step_embeddings' THEN 3 ELSE 4 END, state, items DESC;
