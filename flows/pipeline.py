"""The pipeline flow: manifest and classes in, scores, status rows, views and a report out.

    plan -> write-scripts -> encode-texts --------+
         -> acquire-shard (one per shard) --------+-> score-shard (one per shard) -> report

A shard whose every item the plan found done is not a task run of its own: all such shards of a
stage share one (``acquire-settled-shards``, ``score-settled-shards``), running the same stage code.

The store is the truth: every stage skips what its key says is already done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote as prefect_quote

from actalign.config import RunConfig
from actalign.flows.placement import encoding_placement
from actalign.flows.progress import spinner, wait_with_progress
from actalign.inputs import Inputs, load_inputs, shards
from actalign.manifest import VideoSpec
from actalign.queries.runner import refresh_views
from actalign.registry import ModelIdentity, fetch_identity
from actalign.script_assignment import ScriptAssignment, assign_scripts
from actalign.stages import ACQUIRE, SCORE
from actalign.storage.freshness import describe_plan, plan_run
from actalign.storage.lock import write_lock
from actalign.storage.records import RunRecord, StatusRow, mark_interrupted, new_run_id, now, write_run, write_status, write_videos
from actalign.storage.workdir import Workdir
from actalign.tasks.acquire import AcquireResult, source_fingerprint
from actalign.tasks.prefect_tasks import (
    acquire_settled,
    acquire_shard,
    encode_texts_task,
    score_settled,
    score_shard,
    write_report_task,
    write_scripts_task,
)
from actalign.tasks.score import ScoreResult
from actalign.tasks.texts import TextsResult


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    state: str
    workdir: str
    report: str
    trained: bool
    caveat: str | None  # the model's banner, if it has one
    n_videos: int
    n_failed: int
    decoded_frames: int
    encoded_frames: int
    reused_videos: int
    downloaded_videos: int
    scripts_generated: int
    scripts_reused: int
    llm_requests: int
    encoded_texts: int
    scored_pairs: int
    reused_pairs: int


@flow(name="actalign-pipeline")
def pipeline(config: RunConfig, run_id: str | None = None) -> RunSummary:
    logger = get_run_logger()
    inputs = load_inputs(config)
    model = fetch_identity(config)  # plans and keys use the identity; only the encoding tasks load the weights
    if model.caveat:
        logger.warning(model.caveat)
    workdir = Workdir.open(config.workdir)
    for interrupted in mark_interrupted(workdir):
        logger.warning("run %s was interrupted (its process is gone); this run reuses what it stored", interrupted)
    record = RunRecord(
        run_id=run_id or new_run_id(),
        started_at=now(),
        model=model.model_id,
        model_trained=model.trained,
        model_caveat=model.caveat,
        config=config.model_dump(mode="json"),
        n_videos=len(inputs.videos),
    )
    write_run(workdir, record)
    write_videos(workdir, record.run_id, inputs.videos)
    try:
        assignments = [assign_scripts(inputs.classes, inputs.videos, config, kind) for kind in config.text_kinds()]
        plan = plan_run(workdir, config, inputs, model, lambda video: source_fingerprint(video, config), assignments)
        plan.write(workdir, record.run_id)  # before any work: what the run will recompute, and the store entries it references
        logger.info("plan: %s", describe_plan(plan))
        summary = _run_stages(workdir, record, config, model, inputs, assignments, plan.unsettled)
    except BaseException:
        record.state, record.finished_at = "failed", now()
        write_run(workdir, record)
        raise
    logger.info("run %s %s: %d videos, %d failed", record.run_id, summary.state, summary.n_videos, summary.n_failed)
    return summary


def _run_stages(
    workdir: Workdir,
    record: RunRecord,
    config: RunConfig,
    model: ModelIdentity,
    inputs: Inputs,
    assignments: list[ScriptAssignment],
    unsettled: dict[str, set[str]],
) -> RunSummary:
    """``unsettled``: the plan's videos with work left per stage; the other shards share one task run per stage."""
    run_id = record.run_id
    quote = untraversed(config)
    script_futures = [write_scripts_task.submit(workdir, run_id, quote(assignment)) for assignment in assignments]
    all_scripts = {key: (spec, a.kind) for a in assignments for key, spec in a.classes.items()}
    video_shards = {f"{i:05d}": shard for i, shard in enumerate(shards(inputs.videos, config.videos_per_shard(len(inputs.videos))))}
    with encoding_placement(config):  # on a Dask cluster: GPU workers only when the run asks for cuda
        texts_future = encode_texts_task.submit(workdir, run_id, quote(all_scripts), script_futures, quote(config), quote(model))
        # Each task gets its shards' videos and the config: paths and keys travel, never arrays or the model.
        acquired = _submit_shards(
            video_shards, unsettled[ACQUIRE.name],
            lambda name, shard: acquire_shard.submit(workdir, run_id, name, quote(shard), quote(config), quote(model)),
            lambda settled: acquire_settled.submit(workdir, run_id, quote(settled), quote(config), quote(model)),
        )
    wait_with_progress(_videos_per_future(acquired, video_shards), "acquire (decode + encode)")
    with spinner("scripts and text embeddings"):  # they ran beside acquire; an LLM or a large text tower may still be busy
        scripts, texts = [future.result() for future in script_futures], texts_future.result()

    results: dict[str, AcquireResult] = {}
    for names, future in acquired.items():
        for name, outcome in by_shard(names, shard_outcome(future)).items():
            if isinstance(outcome, BaseException):  # the task crashed even after Prefect's retry
                write_status(workdir, run_id, ACQUIRE.name, name, [StatusRow.failed(ACQUIRE.name, v.video_id, outcome) for v in video_shards[name]])
                outcome = AcquireResult(failed=len(video_shards[name]))
            results[name] = outcome

    embed_keys = candidate_embed_keys(assignments, texts)

    def keys_of(part: dict[str, list[VideoSpec]]) -> tuple[dict[str, str], dict[str, dict[str, dict[str, str]]]]:
        """The frames keys and embedding keys of these shards' videos."""
        frames_keys = {video: key for name in part for video, key in results[name].frames_keys.items()}
        return frames_keys, {v.video_id: embed_keys.get(v.video_id, {}) for shard in part.values() for v in shard}

    scored = _submit_shards(
        video_shards, unsettled[SCORE.name],
        lambda name, shard: score_shard.submit(workdir, run_id, name, quote(shard), *map(quote, keys_of({name: shard})), quote(model), quote(config)),
        lambda settled: score_settled.submit(workdir, run_id, quote(settled), *map(quote, keys_of(settled)), quote(model), quote(config)),
    )
    wait_with_progress(_videos_per_future(scored, video_shards), "score")
    score_results: list[ScoreResult] = []
    for names, future in scored.items():
        for name, outcome in by_shard(names, shard_outcome(future)).items():
            if isinstance(outcome, BaseException):
                acquired_ids = results[name].frames_keys
                write_status(workdir, run_id, SCORE.name, name, [StatusRow.failed(SCORE.name, v, outcome) for v in acquired_ids])
                outcome = ScoreResult(failed=len(acquired_ids))
            score_results.append(outcome)
    score_failures = sum(r.failed for r in score_results)

    n_failed = sum(r.failed for r in results.values()) + score_failures + sum(len(s.failed_keys) for s in scripts) + texts.failed
    record.state = "completed" if n_failed == 0 else "completed_with_failures"
    record.finished_at, record.n_failed = now(), n_failed
    record.stage_keys = {
        "model": {
            "id": model.model_id,
            "fingerprint": model.fingerprint,
            "dtype": model.dtype_name,
            "family": model.family,
            "calibration": model.calibration,  # the affinity's scale and bias below are what it made of the checkpoint's
            "logit_scale": model.logit_scale,
            "logit_bias": model.logit_bias,
        },
        "encoder": next((r.encoder for r in (*results.values(), texts) if r.encoder), None),  # None: nothing was encoded
        "threads": next((r.threads.record() for r in score_results if r.threads), None),  # actalign.threads
        "decoding": next((r.decoding for r in results.values() if r.decoding), None),
        "scripts": sorted(all_scripts),
        "step_embeddings": sorted(texts.embed_keys.values()),
    }
    with spinner("views and report"):
        if problem := refresh_views(workdir):
            get_run_logger().warning(problem)
        final = {"state": record.state, "finished_at": record.finished_at, "n_failed": n_failed, "stage_keys": record.stage_keys}
        report = write_report_task(workdir, run_id, quote(final))  # report.md, and the Prefect table and markdown artifacts
    write_run(workdir, record)  # last: a run recorded as completed has every output, its report included
    return RunSummary(
        run_id=run_id,
        state=record.state,
        workdir=str(workdir.root),
        report=str(report),
        trained=model.trained,
        caveat=model.caveat,
        n_videos=len(inputs.videos),
        n_failed=n_failed,
        decoded_frames=sum(r.decoded_frames for r in results.values()),
        encoded_frames=sum(r.encoded_frames for r in results.values()),
        reused_videos=sum(r.reused for r in results.values()),
        downloaded_videos=sum(r.downloaded for r in results.values()),
        scripts_generated=sum(s.generated for s in scripts),
        scripts_reused=sum(s.reused for s in scripts),
        llm_requests=sum(s.llm_requests for s in scripts),
        encoded_texts=texts.encoded_texts,
        scored_pairs=sum(r.scored_pairs for r in score_results),
        reused_pairs=sum(r.reused_pairs for r in score_results),
    )


def untraversed(config: RunConfig) -> Callable[[Any], Any]:
    """How to pass a task parameter that holds no future: Prefect looks for futures in every element of
    every parameter, twice per task run (a re-run's settled shards and keys are tens of thousands of
    elements), unless it is wrapped in ``quote``. On Dask the parameters are serialised by distributed,
    which turns Prefect's annotations into plain tuples, so they go as they are."""
    return (lambda value: value) if config.dask_address else prefect_quote


def candidate_embed_keys(assignments: list[ScriptAssignment], texts: TextsResult) -> dict[str, dict[str, dict[str, str]]]:
    """video_id -> candidate -> text kind -> the embedding key of its script (a kind is absent when its script failed)."""
    keys: dict[str, dict[str, dict[str, str]]] = {}
    for assignment in assignments:
        for video_id, by_class in assignment.keys.items():
            for candidate, script_key in by_class.items():
                if script_key in texts.embed_keys:
                    keys.setdefault(video_id, {}).setdefault(candidate, {})[assignment.kind] = texts.embed_keys[script_key]
    return keys


def _submit_shards(
    video_shards: dict[str, list[VideoSpec]],
    unsettled: set[str],
    one: Callable[[str, list[VideoSpec]], PrefectFuture[Any]],
    settled: Callable[[dict[str, list[VideoSpec]]], PrefectFuture[Any]],
) -> dict[tuple[str, ...], PrefectFuture[Any]]:
    """One task run per shard with a video in ``unsettled``, and one for all the others (the plan found them
    done: a task run apiece would cost more than their checks). Keys: the shards of each task run."""
    done = {name: shard for name, shard in video_shards.items() if not any(v.video_id in unsettled for v in shard)}
    futures = {(name,): one(name, shard) for name, shard in video_shards.items() if name not in done}
    if done:
        futures[tuple(done)] = settled(done)
    return futures


def _videos_per_future(futures: dict[tuple[str, ...], PrefectFuture[Any]], video_shards: dict[str, list[VideoSpec]]) -> dict[PrefectFuture[Any], int]:
    return {future: sum(len(video_shards[name]) for name in names) for names, future in futures.items()}


def by_shard(names: tuple[str, ...], outcome: Any) -> dict[str, Any]:
    """A task run's outcome for each of its shards: the settled-shards tasks return theirs by shard; an exception ends all."""
    return outcome if isinstance(outcome, dict) else dict.fromkeys(names, outcome)


def shard_outcome(future: PrefectFuture[Any]) -> Any:
    """A shard's result, or the exception that ended it: a failed task run, and also (on Dask) a worker
    process that died under it, e.g. killed for memory, which the future raises instead of a state."""
    try:
        return future.result(raise_on_failure=False)
    except Exception as exc:  # distributed.KilledWorker and the like: the other shards carry on
        return exc


def task_runner(config: RunConfig) -> TaskRunner:
    """The one choice of where tasks run: an existing Dask cluster when the config names one, else
    ``config.workers`` threads in this process."""
    if config.dask_address:
        from prefect_dask import (
            DaskTaskRunner,  # imported only for cluster runs: distributed is slow to import
        )

        if not get_current_settings().api.url:
            logging.getLogger(__name__).warning(
                "--dask-address without PREFECT_API_URL: every Dask worker starts a temporary Prefect server of its own "
                "(on the same database when PREFECT_HOME is shared); start `prefect server start` and set PREFECT_API_URL"
            )
        return DaskTaskRunner(address=config.dask_address)
    return ThreadPoolTaskRunner(max_workers=config.workers)


def run_pipeline(config: RunConfig, run_id: str | None = None, wait: bool = True, run_name: str | None = None) -> RunSummary:
    """Run the flow on the task runner the config asks for, holding the workdir's write lock (the one
    path of the CLI, the Python API and the deployments): while another writer holds it, wait saying
    who, or raise ``WorkdirBusy`` when not ``wait``.

    Without a configured server (Prefect's temporary one, which dies with this
    process) flow-run heartbeats can reach no crash detector, and joining their
    thread costs up to a second per run: they are off. A killed run is marked
    ``interrupted`` by the next command on the workdir (``storage.records``).
    ``run_name`` names the Prefect flow run (Prefect's generated name otherwise).
    """
    runner = pipeline.with_options(task_runner=task_runner(config), **({"flow_run_name": run_name} if run_name else {}))
    with write_lock(config.workdir, "run", lambda: run_id or new_run_id(), wait=wait) as locked_run_id:
        if get_current_settings().api.url:
            return runner(config, locked_run_id)
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            return runner(config, locked_run_id)
