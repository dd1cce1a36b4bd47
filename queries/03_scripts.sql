-- scripts: one row per step of a class's script, with the provider that wrote it and the script key.
CREATE OR REPLACE VIEW scripts AS
SELECT class_id, domain, action, step_idx, text, provider, script_key
FROM read_parquet('{root}/store/scripts/*.parquet', union_by_name = true);
