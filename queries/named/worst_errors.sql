-- worst_errors: the run's scorer's wrong answers (true_rank > 1) by margin, worst first: the label's
-- score minus the best other candidate's score, most negative first.
-- params: run_id, scorer, limit
SELECT video_id, label, predicted, true_rank, true_score, top_score, margin
FROM predictions
WHERE run_id = $run_id AND scorer = $scorer AND true_rank > 1
ORDER BY margin ASC NULLS LAST, video_id
LIMIT $limit;
