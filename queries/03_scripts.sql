-- scripts: one row per text of a class's script: its kind (steps, attributes, subtexts), position and text,
-- the provider that wrote it and the script key; for LLM scripts also the model, the prompt template and
-- its hash, and the request that wrote it.
CREATE OR REPLACE VIEW scripts AS
SELECT class_id, kind, domain, action, step_idx, text, provider, script_key, model, template, template_hash, request_key
FROM read_parquet('{root}/store/scripts/*.parquet', union_by_name = true);
