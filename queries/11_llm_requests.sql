-- llm_requests: one row per LLM request of a run (one question's candidates, or one class): its state,
-- model, template, answers received (follow-ups included), token usage and the raw final answer,
-- kept also when the answer was rejected. Token cost: sum prompt_tokens and completion_tokens.
CREATE OR REPLACE VIEW llm_requests AS
SELECT run_id, request_key, domain, actions, state, model, response_model, template, response_format,
       requests, prompt_tokens, completion_tokens, raw_response, error_class, message
FROM read_parquet('{root}/runs/*/llm_requests/*.parquet', union_by_name = true);
