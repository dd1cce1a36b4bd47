"""The stages as Prefect tasks: names, retries and logging around the plain stage functions.

The only module of ``actalign.tasks`` that imports Prefect, so that planning
(`actalign status`), reports and queries start without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from actalign.classes import ClassSpec
from actalign.config import RunConfig
from actalign.manifest import VideoSpec
from actalign.queries.report.build import build_report
from actalign.queries.report.write import write_files
from actalign.registry import ModelIdentity
from actalign.script_assignment import ScriptAssignment
from actalign.storage.workdir import Workdir
from actalign.tasks.acquire import AcquireResult, acquire_videos
from actalign.tasks.artifacts import publish_artifacts
from actalign.tasks.results import write_results
from actalign.tasks.score import ScoreResult, score_videos
from actalign.tasks.scripts import ScriptsResult, write_scripts
from actalign.tasks.texts import TextsResult, encode_texts


@task(name="acquire-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def acquire_shard(workdir: Workdir, run_id: str, shard: str, videos: list[VideoSpec], config: RunConfig, model: ModelIdentity) -> AcquireResult:
    return acquire_videos(workdir, run_id, shard, videos, config, model)


@task(name="write-scripts", retries=0, cache_policy=NO_CACHE)  # the LLM provider has its own retry layer
def write_scripts_task(workdir: Workdir, run_id: str, assignment: ScriptAssignment) -> ScriptsResult:
    return write_scripts(workdir, run_id, assignment)


@task(name="encode-texts", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def encode_texts_task(
    workdir: Workdir, run_id: str, scripts: dict[str, tuple[ClassSpec, str]], written: list[ScriptsResult], config: RunConfig, model: ModelIdentity
) -> TextsResult:
    return encode_texts(workdir, run_id, scripts, written, config, model)


@task(name="score-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def score_shard(
    workdir: Workdir,
    run_id: str,
    shard: str,
    videos: list[VideoSpec],
    frames_keys: dict[str, str],
    embed_keys: dict[str, dict[str, dict[str, str]]],
    model: ModelIdentity,
    config: RunConfig,
) -> ScoreResult:
    return score_videos(workdir, run_id, shard, videos, frames_keys, embed_keys, model, config)


@task(name="write-report", retries=1, cache_policy=NO_CACHE)
def write_report_task(workdir: Workdir, run_id: str, final: Mapping[str, Any] | None = None) -> Path:
    """The run's ``report.md`` (no heatmaps: ``actalign report`` draws them) and its Prefect artifacts."""
    report = build_report(workdir, run_id, worst=0, out_dir=workdir.run_dir(run_id), final=final)
    path = write_files(report, ("md",))["md"]
    write_results(workdir, run_id, final)  # results.json: a result file, not an artifact, so its failure fails the task
    try:
        publish_artifacts(report)
    except Exception as exc:  # the results are on disk; a missing artifact must not fail the run
        get_run_logger().warning("could not publish the report artifacts: %s: %s", type(exc).__name__, exc)
    return path
