-- latest_run: the id of the most recently started run (no rows on an empty workdir).
-- params: (none)
SELECT run_id FROM runs ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT 1;
