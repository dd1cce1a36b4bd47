"""Report stage: the run's tables as Markdown next to its data, with the untrained-model banner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from actalign.models import UNTRAINED_BANNER
from queries import tables
from queries.runner import Result
from storage.workdir import Workdir


def markdown_table(result: Result) -> str:
    if not result.rows:
        return "_(no rows)_"
    lines = ["| " + " | ".join(result.columns) + " |", "|" + "---|" * len(result.columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in result.rows]
    return "\n".join(lines)


def write_report(workdir: Workdir, run_id: str, config: dict[str, Any], trained: bool) -> Path:
    sections = [f"# actalign run {run_id}"]
    if not trained:
        sections.append(f"> **{UNTRAINED_BANNER}**")
    sections += [
        "## Accuracy (labelled videos)",
        markdown_table(tables.accuracy(workdir, run_id)),
        "## Predictions (* = correct)",
        markdown_table(tables.predictions(workdir, run_id)),
        "## Failures",
        markdown_table(tables.failures(workdir, run_id)),
        "## Configuration",
        "```json\n" + json.dumps(config, indent=2, sort_keys=True, default=str) + "\n```",
    ]
    path = workdir.report_path(run_id)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


@task(name="write-report", retries=1, cache_policy=NO_CACHE)
def write_report_task(workdir: Workdir, run_id: str, config: dict[str, Any], trained: bool) -> Path:
    return write_report(workdir, run_id, config, trained)
