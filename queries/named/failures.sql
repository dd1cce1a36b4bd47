-- failures: the run's failed status rows: stage, item (a video, a class or an LLM request), error class
-- and message.
-- params: run_id
SELECT stage, item, error_class, message FROM status
WHERE run_id = $run_id AND state = 'failed' ORDER BY stage, item;
