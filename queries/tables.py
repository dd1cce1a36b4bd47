"""Named queries of one run, shared by the CLI's printed tables and the run report."""

from __future__ import annotations

from queries.runner import Result, run_sql
from storage.workdir import Workdir


def accuracy(workdir: Workdir, run_id: str) -> Result:
    return run_sql(
        workdir,
        """SELECT scorer, n, n_missing AS missing,
                  round(100 * top1, 1) AS "top-1 %", round(100 * top1_lo, 1) || '-' || round(100 * top1_hi, 1) AS "95% CI",
                  round(100 * top2, 1) AS "top-2 %", round(100 * top3, 1) AS "top-3 %", round(100 * random_top1, 1) AS "random %"
           FROM accuracy WHERE run_id = ? ORDER BY scorer""",
        [run_id],
    )


def predictions(workdir: Workdir, run_id: str) -> Result:
    """One row per video: the label and each scorer's prediction (a * marks a correct one)."""
    scorers = [row[0] for row in run_sql(workdir, "SELECT DISTINCT scorer FROM predictions WHERE run_id = ? ORDER BY 1", [run_id]).rows]
    columns = "".join(
        f""", first(predicted || CASE WHEN predicted = label THEN ' *' ELSE '' END) FILTER (WHERE scorer = ${i + 2}) AS "{name}\""""
        for i, name in enumerate(scorers)
    )
    return run_sql(
        workdir,
        f"SELECT video_id, coalesce(any_value(label), '') AS label{columns} FROM predictions WHERE run_id = $1 GROUP BY video_id ORDER BY video_id",
        [run_id, *scorers],
    )


def failures(workdir: Workdir, run_id: str) -> Result:
    return run_sql(
        workdir,
        """SELECT stage, item, error_class, message FROM status
           WHERE run_id = ? AND state = 'failed' ORDER BY stage, item""",
        [run_id],
    )
