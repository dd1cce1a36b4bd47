-- runs: one row per run: when, its state (running, completed, completed_with_failures, failed, interrupted),
-- the model, whether it was trained and its caveat (untrained, or trained on generated shapes only), the full configuration and the stage keys (JSON).
CREATE OR REPLACE VIEW runs AS
SELECT run_id, started_at, finished_at, state, model, model_trained, model_caveat, config, stage_keys, n_videos, n_failed, host, pid
FROM read_parquet('{root}/runs/*/run.parquet', union_by_name = true);
