-- scores: one row per (run, video, candidate, scorer): higher is a better match; path_len is the
-- alignment path length for alignment scorers (NULL for mean-pool); frames_key and embed_key name the
-- stored frame and step embeddings it was computed from.
CREATE OR REPLACE VIEW scores AS
SELECT run_id, video_id, candidate, scorer, score, path_len, frames_key, embed_key
FROM read_parquet('{root}/runs/*/scores/*.parquet', union_by_name = true);
