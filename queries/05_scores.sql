-- scores: one row per (run, video, candidate, scorer): higher is a better match; path_len is the
-- alignment path length for alignment scorers (NULL for mean-pool).
CREATE OR REPLACE VIEW scores AS
SELECT run_id, video_id, candidate, scorer, score, path_len
FROM read_parquet('{root}/runs/*/scores/*.parquet', union_by_name = true);
