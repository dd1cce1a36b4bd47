-- frame_embeddings: one row per sampled frame of a video under one model and sampling (frames_key);
-- embedding is FLOAT[] as the image tower returned it (not normalised): use list_cosine_similarity.
CREATE OR REPLACE VIEW frame_embeddings AS
SELECT video_id, frame_idx, t_s, embedding, model, frames_key
FROM read_parquet('{root}/store/frame_embeddings/*.parquet', union_by_name = true);
