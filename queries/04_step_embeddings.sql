-- step_embeddings: one row per embedded text of a class: its steps (kind 'step', step_idx 0..K-1),
-- its class-name text (kind 'name', step_idx -1, used by the mean-pool baseline), and when a scorer
-- needs them its attribute keywords (kind 'attribute') and storyboard sub-texts (kind 'subtext').
CREATE OR REPLACE VIEW step_embeddings AS
SELECT class_id, kind, step_idx, text, embedding, model, embed_key
FROM read_parquet('{root}/store/step_embeddings/*.parquet', union_by_name = true);
