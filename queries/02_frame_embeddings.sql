-- frame_embeddings: one row per sampled frame of a video under one model and one sampling (frames_key):
-- fps and the segment start_s..end_s (NULL: the whole video) it was sampled at (NULL for files stored before
-- these columns). A video sampled at two fps has two sets of frame_idx; one run's frames are those of the
-- frames keys its plan recorded:
--   SELECT f.* FROM frame_embeddings f JOIN (SELECT item AS video_id, key AS frames_key FROM freshness
--     WHERE run_id = '<run>' AND stage = 'acquire') USING (video_id, frames_key)
-- embedding is FLOAT[] as the image tower returned it (not normalised): use list_cosine_similarity.
CREATE OR REPLACE VIEW frame_embeddings AS
SELECT video_id, frame_idx, t_s, fps, start_s, end_s, embedding, model, frames_key
FROM read_parquet('{root}/store/frame_embeddings/*.parquet', union_by_name = true);
