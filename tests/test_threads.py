"""Thread budgets: the cores a process may use, shared among the stage bodies it runs at once, and held to.

Each budget is checked in a real process (a child with its own affinity mask), on a
real in-process Dask worker, and through the score stage over a real store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from test_scorers import stored_shard
from threadpoolctl import threadpool_info, threadpool_limits

from actalign.config import RunConfig
from actalign.tasks.score import score_videos
from actalign.threads import ThreadBudget, budget_for

CHILD = """
import json, os, sys
os.sched_setaffinity(0, set(json.loads(sys.argv[1])))
import numpy, numba
from threadpoolctl import threadpool_info
from actalign.threads import apply, budget_for
budget = apply(budget_for(int(sys.argv[2])))
blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
print(json.dumps({"budget": budget.record(), "blas": blas, "numba": numba.get_num_threads()}))
"""


def in_child(cpus: set[int], workers: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sorted(cpus)), str(workers)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_budget_shares_the_cores_of_the_affinity_mask_among_the_workers():
    cores = len(os.sched_getaffinity(0))
    budget = budget_for(2)
    assert (budget.cores, budget.workers, budget.source) == (cores, 2, "affinity")
    assert budget.numba == max(1, cores // 2) and budget_for(1).numba == cores and budget.torch is None  # torch: its own default
    assert budget.blas == budget_for(1).blas == 1  # scoring's small products: a BLAS pool only adds waiting
    with pytest.raises(ValueError, match="workers must be at least 1"):
        budget_for(0)


def test_a_process_on_one_core_gives_each_body_one_thread_and_holds_blas_to_it():
    """One core in the mask (as taskset or a container's cpuset gives): one BLAS and numba thread, however many workers."""
    cpu = min(os.sched_getaffinity(0))
    child = in_child({cpu}, workers=2)
    assert child["budget"]["cores"] == 1 and child["budget"]["blas"] == 1
    assert child["blas"] and set(child["blas"]) == {1} and child["numba"] == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_workers_split_the_cores_and_blas_keeps_one_thread_per_body():
    """Without a budget NumPy's BLAS would use a thread per core of the mask (2 here) in every call."""
    cpus = set(sorted(os.sched_getaffinity(0))[:2])
    alone, shared = in_child(cpus, workers=1), in_child(cpus, workers=2)
    assert (alone["budget"]["numba"], alone["numba"], set(alone["blas"])) == (2, 2, {1})
    assert (shared["budget"]["numba"], shared["numba"], set(shared["blas"])) == (1, 1, {1})


def test_each_video_decoder_gets_its_share_of_the_bodys_cores():
    """Four decoders (two bodies of two) on two cores: one FFmpeg thread each, not a thread per core each."""
    two_cores = ThreadBudget(cores=2, workers=2, blas=1, numba=1, torch=None, source="affinity")
    sixteen = ThreadBudget(cores=16, workers=2, blas=1, numba=8, torch=None, source="affinity")
    assert [two_cores.decoder_threads(n) for n in (0, 1, 2, 8)] == [1, 1, 1, 1]
    assert [sixteen.decoder_threads(n) for n in (1, 2, 8)] == [8, 4, 1]


def test_on_a_dask_worker_its_nthreads_are_the_cores_and_the_concurrency():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        budget = client.submit(budget_for, 8, pure=False).result()
    assert budget == ThreadBudget(cores=3, workers=3, blas=1, numba=1, torch=3, source="dask-worker")  # torch: the worker's cores too
    assert budget_for(1).source == "affinity"  # back outside the worker


def test_the_score_stage_holds_blas_to_its_budget_and_returns_it(tmp_path):
    workdir, videos, frames_keys, embed_keys, model = stored_shard(tmp_path / "work", np.random.default_rng(5))
    config = RunConfig(videos="v.csv", classes="c.yaml", workdir=tmp_path / "work", workers=2)
    blas_before, numba_before = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), numba.get_num_threads()
    try:
        result = score_videos(workdir, "run-1", "00000", videos, frames_keys, embed_keys, model, config)
        assert result.threads == budget_for(2) and result.scored_pairs == 12
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {result.threads.blas}
        assert numba.get_num_threads() == result.threads.numba
    finally:  # this test process as it was
        threadpool_limits(limits=blas_before, user_api="blas")
        numba.set_num_threads(numba_before)


OPENMP_CHILD = """
import os, actalign, torch
print(os.environ.get("OMP_WAIT_POLICY"), torch.get_num_threads())
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_torchs_openmp_threads_sleep_between_regions_unless_the_user_says_otherwise(given, expected):
    """Set before torch loads its OpenMP runtime (by importing actalign): spinning threads took the decoders' cores."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    done = subprocess.run([sys.executable, "-c", OPENMP_CHILD], capture_output=True, text=True, check=True, env=env, timeout=300)
    assert done.stdout.split()[0] == expected
