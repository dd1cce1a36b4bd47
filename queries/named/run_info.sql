-- run_info: the run's record: state, times, model, whether it is trained and its caveat, configuration (JSON, no
-- secrets: cookies and proxy are never stored), stage keys, video and failure counts.
-- params: run_id
SELECT run_id, started_at, finished_at, state, model, model_trained, model_caveat, config, stage_keys, n_videos, n_failed
FROM runs WHERE run_id = $run_id;
