-- sweeps: one row per arm of every sweep (`actalign sweep`): the sweep, the arm, its run id and state,
-- whether it is the baseline, its settings (JSON) and one column per varied setting (prompts.steps -> prompts_steps).
-- Join runs, accuracy or predictions on run_id to compare the arms in SQL.
CREATE OR REPLACE VIEW sweeps AS
SELECT *
FROM read_parquet('{root}/sweeps/*/arms.parquet', union_by_name = true);
