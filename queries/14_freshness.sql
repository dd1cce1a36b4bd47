-- freshness: one row per (plan, stage, item): what a run (run_id) or `actalign status` (run_id NULL)
-- found before any work. state: fresh (in the store), stale (to compute, with the reason) or error
-- (no key, e.g. a missing video file). stage: acquire (videos), scripts (LLM requests or hand-written
-- scripts), step_embeddings (scripts), score ((video, candidate, scorer) pairs).
CREATE OR REPLACE VIEW freshness AS
SELECT plan_id, run_id, created_at, stage, item, key, path, state, reason
FROM read_parquet(['{root}/runs/*/plan.parquet', '{root}/plans/*.parquet'], union_by_name = true);
