"""The stages as Prefect tasks: names, retries and logging around the plain stage functions.

The only module of ``actalign.tasks`` that imports Prefect when imported
(``tasks/artifacts.py`` imports it only to publish), so that planning
(`actalign status`), reports and queries start without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from actalign.queries.report.build import build_report
from actalign.queries.report.write import write_files
from actalign.queries.runner import session
from actalign.storage.workdir import Workdir
from actalign.tasks.acquire import acquire_settled_shards, acquire_videos
from actalign.tasks.artifacts import publish_artifacts
from actalign.tasks.results import write_results
from actalign.tasks.score import score_settled_shards, score_videos
from actalign.tasks.scripts import write_scripts
from actalign.tasks.texts import encode_texts

# The stage functions themselves, as tasks: their signatures are the tasks' parameters.
acquire_shard = task(name="acquire-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)(acquire_videos)
write_scripts_task = task(name="write-scripts", retries=0, cache_policy=NO_CACHE)(write_scripts)  # the LLM provider retries itself
encode_texts_task = task(name="encode-texts", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)(encode_texts)
score_shard = task(name="score-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)(score_videos)
# The shards a plan found done, all in one task run each (a re-run's shards would otherwise cost a task run apiece).
acquire_settled = task(name="acquire-settled-shards", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)(acquire_settled_shards)
score_settled = task(name="score-settled-shards", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)(score_settled_shards)


@task(name="write-report", retries=1, cache_policy=NO_CACHE)
def write_report_task(workdir: Workdir, run_id: str, final: Mapping[str, Any] | None = None) -> Path:
    """The run's ``report.md`` (no heatmaps: ``actalign report`` draws them), ``results.json`` and its Prefect
    artifacts, from one session over the views."""
    with session(workdir) as db:
        report = build_report(workdir, run_id, worst=0, out_dir=workdir.run_dir(run_id), final=final, db=db)
        path = write_files(report, ("md",))["md"]
        write_results(workdir, run_id, final, db)  # results.json: a result file, not an artifact, so its failure fails the task
    try:
        publish_artifacts(report)
    except Exception as exc:  # the results are on disk; a missing artifact must not fail the run
        get_run_logger().warning("could not publish the report artifacts: %s: %s", type(exc).__name__, exc)
    return path
