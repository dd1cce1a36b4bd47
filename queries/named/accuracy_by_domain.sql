-- accuracy_by_domain: the accuracy_by_domain view's rows of the given runs.
-- params: runs (a list of run ids)
SELECT * FROM accuracy_by_domain WHERE list_contains($runs::VARCHAR[], run_id) ORDER BY run_id, domain, scorer;
