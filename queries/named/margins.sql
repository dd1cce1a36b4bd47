-- margins: per scorer of the run, every scored video's margin (the label's score minus the best other
-- candidate's score; > 0 means ranked first), for the margin histogram.
-- params: run_id
SELECT scorer, video_id, margin FROM predictions
WHERE run_id = $run_id AND margin IS NOT NULL
ORDER BY scorer, video_id;
