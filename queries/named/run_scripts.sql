-- run_scripts: where the run's LLM-written scripts came from: the LLM model, the prompt template and its
-- hash, and how many classes each wrote (through the run's llm_requests; no rows for hand-written steps).
-- params: run_id
SELECT s.provider, s.model, s.template, s.template_hash, count(DISTINCT s.class_id) AS classes
FROM (SELECT DISTINCT request_key FROM llm_requests WHERE run_id = $run_id AND state = 'ok') r
JOIN scripts s USING (request_key)
GROUP BY ALL
ORDER BY classes DESC, s.template_hash;
