-- videos: one row per (run, video): its source file, segment, domain, candidate class ids and true label.
CREATE OR REPLACE VIEW videos AS
SELECT run_id, video_id, source, start_s, end_s, domain, candidates, label
FROM read_parquet('{root}/runs/*/videos.parquet', union_by_name = true);
