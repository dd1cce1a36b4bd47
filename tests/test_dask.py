"""Scale-out: the pipeline on a real Dask cluster gives the local runner's numbers, and encoding
tasks of a cuda run are held to GPU workers by the scheduler.

The tiny model is untrained: these tests compare runners, never accuracy.
"""

from __future__ import annotations

import os
import pickle
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from distributed import Client, LocalCluster, Scheduler, SpecCluster, Worker, get_worker
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner
from pydantic import ValidationError
from test_pipeline import config_for, query

import actalign.flows.pipeline
from actalign.config import DownloadSettings, RunConfig
from actalign.flows.pipeline import run_pipeline, shard_outcome, task_runner
from actalign.flows.placement import encoding_placement
from actalign.manifest import VideoSpec
from actalign.registry import TORCH_THREADS_ENV, ModelIdentity, torch_threads
from actalign.storage.workdir import Workdir

pytestmark = pytest.mark.usefixtures("prefect_harness")

ENV_FOR_WORKERS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ACTALIGN_CACHE", "PREFECT_HOME", "DO_NOT_TRACK")


def _warm_up() -> None:
    """Run in each worker: the imports and the numba compile a long-lived worker pays once (about 10 s here)."""
    import numpy as np

    import actalign.tasks.acquire
    import actalign.tasks.score
    import actalign.tasks.texts  # noqa: F401
    from actalign.align import align_many

    align_many([np.full((2, 3), 0.5, np.float32)])


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each, as `dask worker --nthreads 1` twice on one machine;
    warming up in the background while the test runs the local pipeline."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local, Client(local) as client:
        client.wait_for_workers(2)
        warming = [client.submit(_warm_up, workers=[worker], pure=False) for worker in client.scheduler_info()["workers"]]
        yield local, client
        del warming


def _scores(workdir: Path, run_id: str) -> dict[tuple[str, str, str], float]:
    rows = query(workdir, "SELECT video_id, candidate, scorer, score FROM scores WHERE run_id = ?", run_id)
    return {(video, candidate, scorer): score for video, candidate, scorer, score in rows}


def _loaded_encoders() -> int:
    """Run in a worker: how many models this process holds."""
    from actalign import models

    return len(models._ENCODERS)


def _task_runs_of_the_last_flow_run() -> Counter:
    """(task name, state) of the latest flow run, as the flow's Prefect server recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as api:
        (last,) = api.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
        runs = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[last.id])))
    return Counter((run.name.rsplit("-", 1)[0], run.state_type.value) for run in runs)


def _started_a_prefect_server() -> bool:
    """Run in a worker: a worker without the flow's API URL would start a temporary server of its own."""
    import sys

    return "prefect.server.api.server" in sys.modules


@pytest.mark.slow
def test_dask_cluster_gives_the_local_scores(cluster, demo_dataset, tmp_path, monkeypatch):
    local_cluster, client = cluster
    manifest, classes = demo_dataset
    placements: list[str] = []  # every use of the placement helper by the flow: the run's device
    monkeypatch.setattr(actalign.flows.pipeline, "encoding_placement", lambda config: placements.append(config.device) or encoding_placement(config))

    local = run_pipeline(config_for(manifest, classes, tmp_path / "local"))  # while the workers warm up
    # The workers were spawned from this process: they see the offline hub, the model cache and Prefect's home.
    for name, value in client.run(lambda: {k: os.environ.get(k) for k in ENV_FOR_WORKERS}).items():
        assert value == {k: os.environ[k] for k in ENV_FOR_WORKERS}, name
    started = time.perf_counter()
    distributed_run = run_pipeline(config_for(manifest, classes, tmp_path / "dask", dask_address=local_cluster.scheduler_address))
    print(f"dask run: {time.perf_counter() - started:.1f} s")

    assert local.state == distributed_run.state == "completed" and distributed_run.n_failed == 0
    assert distributed_run.encoded_frames == local.encoded_frames == 72
    # The workers reported to the flow's Prefect server (its URL travels in the settings context).
    assert _task_runs_of_the_last_flow_run() == {
        ("write-scripts", "COMPLETED"): 1, ("encode-texts", "COMPLETED"): 1, ("acquire-shard", "COMPLETED"): 2,
        ("score-shard", "COMPLETED"): 2, ("write-report", "COMPLETED"): 1,
    }
    assert not any(client.run(_started_a_prefect_server).values())
    assert placements == ["auto", "auto"]  # one placement for both encoding submit sites, in each run
    # The encoding ran in the worker processes, each loading its own model (never pickled from the flow),
    # with torch on the one core each worker claims: two workers on two cores, no oversubscription.
    assert sum(client.run(_loaded_encoders).values()) >= 1
    assert set(client.run(torch.get_num_threads).values()) == {1}
    ours, theirs = _scores(tmp_path / "local", local.run_id), _scores(tmp_path / "dask", distributed_run.run_id)
    assert len(ours) == 72 and ours.keys() == theirs.keys()
    assert all(abs(ours[k] - theirs[k]) <= 1e-5 for k in ours), "a Dask worker scored differently from the local runner"


@task(cache_policy=NO_CACHE)
def _where_am_i() -> str:
    time.sleep(0.2)  # long enough that both workers get work when nothing restricts it
    return get_worker().name


@task(cache_policy=NO_CACHE)
def _double(x: int) -> int:
    return 2 * x


@flow
def _probe(config: RunConfig, n: int) -> list[str]:
    """Submit as the pipeline submits an encoding task, and say which worker ran each."""
    with encoding_placement(config):
        futures = [_where_am_i.submit() for _ in range(n)]
    return [future.result() for future in futures]


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def _local_probe(config: RunConfig) -> list[int]:
    with encoding_placement(config):
        futures = [_double.submit(i) for i in range(3)]
    return [future.result() for future in futures]


@pytest.fixture(scope="module")
def mixed_cluster():
    """One CPU worker and one GPU worker (`--resources GPU=1`, two threads), in this process: cheap to start."""
    workers = {
        "cpu": {"cls": Worker, "options": {"nthreads": 1}},
        "gpu": {"cls": Worker, "options": {"nthreads": 2, "resources": {"GPU": 1}}},
    }
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": ":0"}}) as spec, Client(spec) as client:
        client.wait_for_workers(2)
        yield spec, client


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_a_cuda_run_encodes_on_gpu_workers_only(mixed_cluster, demo_dataset, tmp_path):
    spec, _ = mixed_cluster
    manifest, classes = demo_dataset
    runner = DaskTaskRunner(address=spec.scheduler_address)
    cuda = config_for(manifest, classes, tmp_path, device="cuda")
    assert Counter(_probe.with_options(task_runner=runner)(cuda, 6)) == {"gpu": 6}
    cpu = config_for(manifest, classes, tmp_path, device="cpu")
    assert set(_probe.with_options(task_runner=runner.duplicate())(cpu, 6)) == {"cpu", "gpu"}  # unrestricted: both
    assert _local_probe(cuda) == [0, 2, 4]  # the thread runner ignores the annotation


def test_torch_threads_per_worker(mixed_cluster, monkeypatch):
    """A worker's torch gets the cores it claims (--nthreads), so workers side by side do not oversubscribe."""
    _, client = mixed_cluster
    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    assert client.submit(torch_threads, workers=["gpu"], pure=False).result() == 2
    assert client.submit(torch_threads, workers=["cpu"], pure=False).result() == 1
    assert torch_threads() is None  # not in a worker: torch's default
    monkeypatch.setenv(TORCH_THREADS_ENV, "3")
    assert client.submit(torch_threads, workers=["cpu"], pure=False).result() == 3


def test_dask_address_is_validated(demo_dataset, tmp_path):
    manifest, classes = demo_dataset
    assert config_for(manifest, classes, tmp_path, dask_address="sched.example.org:8786").dask_address == "tcp://sched.example.org:8786"
    assert config_for(manifest, classes, tmp_path, dask_address="tls://10.0.0.5:8786").dask_address == "tls://10.0.0.5:8786"
    for bad in ("http://host:8786", "tcp://host", "tcp://host:70000", "two words"):
        with pytest.raises(ValidationError, match="not a Dask scheduler address"):
            config_for(manifest, classes, tmp_path, dask_address=bad)
    assert isinstance(task_runner(config_for(manifest, classes, tmp_path)), ThreadPoolTaskRunner)
    assert isinstance(task_runner(config_for(manifest, classes, tmp_path, dask_address="tcp://h:1")), DaskTaskRunner)


def test_what_travels_to_workers_pickles_and_stays_small(demo_dataset, tmp_path):
    """Secrets survive the trip (a worker downloads with the proxy); a shard's arguments are small."""
    manifest, classes = demo_dataset
    config = config_for(manifest, classes, tmp_path, download=DownloadSettings(proxy="http://user:pw@proxy:3128", cookies=tmp_path / "c.txt"))
    assert pickle.loads(pickle.dumps(config)) == config
    assert pickle.loads(pickle.dumps(config)).download.options().proxy == "http://user:pw@proxy:3128"
    video = VideoSpec("v", str(tmp_path / "v.mp4"), 1.0, 4.0, "d", ("a", "b"), "a", {1: [[0, 0, 5, 5]]})
    shard_args = (Workdir.open(tmp_path / "w"), "run", "00000", [video] * 16, config)
    assert pickle.loads(pickle.dumps(shard_args))[3] == [video] * 16
    identity = ModelIdentity("m", "m", None, "f0", True, None, "float32", (32, 32), 2.3, -10.0)  # the score shards' model
    assert pickle.loads(pickle.dumps(identity)) == identity
    assert len(pickle.dumps(shard_args)) < 20_000  # paths and keys, never arrays


@task(cache_policy=NO_CACHE)
def _lose_my_worker() -> None:
    """Stand-in for a shard whose worker dies under it (killed for memory, say): close the worker."""
    worker = get_worker()
    worker.loop.add_callback(worker.close)
    deadline = time.monotonic() + 30
    while worker.status.name not in ("closing", "closed") and time.monotonic() < deadline:
        time.sleep(0.05)


@flow
def _shards_with_a_lost_worker() -> list[object]:
    return [shard_outcome(future) for future in (_double.submit(21), _lose_my_worker.submit())]


def test_a_worker_lost_under_a_shard_fails_only_that_shard():
    """On Dask a worker that dies under a task makes its future raise (KilledWorker) instead of returning
    a failed state; the flow records that shard as failed and the other shard's result stands."""
    import dask
    from distributed import KilledWorker

    workers = {name: {"cls": Worker, "options": {"nthreads": 1}} for name in ("a", "b")}
    scheduler = {"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": ":0"}}
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), SpecCluster(workers=workers, scheduler=scheduler) as cluster:
        # as_current: prefect-dask takes the process's current Dask client over its `address` (another
        # test's cluster may still have one open).
        with Client(cluster) as client, client.as_current():
            client.wait_for_workers(2)
            outcomes = _shards_with_a_lost_worker.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))()
    assert outcomes[0] == 42 and isinstance(outcomes[1], KilledWorker)
