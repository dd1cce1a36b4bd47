"""The report as Prefect artifacts: the accuracy table and the Markdown, published by the flow's report task.

Prefect is imported only to publish, so that the report and its tests load without it.
"""

from __future__ import annotations

from typing import Any

from actalign.queries import stats
from actalign.queries.report.markdown import escape_markdown, render_markdown
from actalign.queries.report.model import Column, Report, cell

TABLE_ARTIFACT_KEY = "actalign-accuracy"  # Prefect artifact keys: lowercase letters, digits, dashes
MARKDOWN_ARTIFACT_KEY = "actalign-report"


def artifact_table(report: Report) -> list[dict[str, Any]]:
    """The accuracy table for a Prefect table artifact: one dict per scorer, values in %; the UI renders each
    string cell as Markdown, so strings are escaped."""
    table = report.table("accuracy")
    rows = []
    for row in table.rows if table else []:
        item: dict[str, Any] = {"run": report.run_id, "scorer": row["scorer"], "scored": row["n"], "left out": row["n_missing"]}
        for k in stats.TOPK:
            item[f"top-{k} %"] = _round_pct(row[f"top{k}"])
            item[f"top-{k} 95 % bootstrap CI"] = cell(row, Column(f"top{k}", "", "ci"))
            item[f"random top-{k} %"] = _round_pct(row[f"random_top{k}"])
        rows.append({key: escape_markdown(value) if isinstance(value, str) else value for key, value in item.items()})
    return rows


def _round_pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def artifact_description(report: Report) -> str:
    model = dict(report.summary).get("model", "?")
    text = escape_markdown(f"actalign run {report.run_id} · model {model} · {report.method['description']}")
    return f"**{escape_markdown(report.banner)}**\n\n{text}" if report.banner else text


def publish_artifacts(report: Report) -> tuple[Any, Any]:
    """Create the table and Markdown artifacts (inside a flow or task run); returns their ids."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    description = artifact_description(report)
    table_id = create_table_artifact(table=artifact_table(report), key=TABLE_ARTIFACT_KEY, description=description)
    markdown_id = create_markdown_artifact(markdown=render_markdown(report, images=False), key=MARKDOWN_ARTIFACT_KEY, description=description)
    return table_id, markdown_id
