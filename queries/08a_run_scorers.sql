-- run_scorers: one row per (run, scorer) the run was configured with (runs.config ->> scorers). The
-- accuracy, accuracy_by_domain and left_out views add any other scorer that has predictions, so a
-- configured scorer that scored nothing still shows up there (n = 0) and nothing scored is hidden.
CREATE OR REPLACE VIEW run_scorers AS
SELECT DISTINCT run_id, unnest(from_json(json_extract(config, '$.scorers'), '["VARCHAR"]')) AS scorer
FROM runs
WHERE json_valid(config) AND json_type(json_extract(config, '$.scorers')) = 'ARRAY';
