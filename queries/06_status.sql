-- status: one row per (run, stage, item): ok, skipped (reused from the store) or failed,
-- with the error class and message of a failure, attempts and seconds spent.
CREATE OR REPLACE VIEW status AS
SELECT run_id, stage, item, state, key, error_class, message, attempts, seconds, recorded_at
FROM read_parquet('{root}/runs/*/status/*.parquet', union_by_name = true);
