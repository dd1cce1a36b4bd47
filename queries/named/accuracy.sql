-- accuracy: the accuracy view's rows (Wilson intervals, random baselines) of the given runs.
-- params: runs (a list of run ids)
SELECT * FROM accuracy WHERE list_contains($runs::VARCHAR[], run_id) ORDER BY run_id, scorer;
