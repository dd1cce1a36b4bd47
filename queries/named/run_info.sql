-- run_info: the run's record: state, times, model and whether it is trained, configuration (JSON, no
-- secrets: cookies and proxy are never stored), stage keys, video and failure counts.
-- params: run_id
SELECT run_id, started_at, finished_at, state, model, model_trained, config, stage_keys, n_videos, n_failed
FROM runs WHERE run_id = $run_id;
