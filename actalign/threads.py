"""Thread budgets: how many threads BLAS, numba and torch may use in each stage body of a process.

Why one place decides: the score stage runs ``--workers`` stage bodies at once in
one process, each calling BLAS. Left alone, NumPy's OpenBLAS gives every call a
pool of one thread per core, so two workers on two cores run four busy threads,
and when other work holds a core OpenBLAS's threads wait on each other: a video's
product (60 x 1152 x 195, float32) took 0.3 ms on one thread and 3 to 30 ms on two
(on a machine whose cores other processes were using). Scoring's products are that small (K x d x T),
so each stage body gets one BLAS thread, whatever the cores: a pool only adds
waiting. A numba parallel region (none of the kernels has one today) gets the
body's share of the cores, ``cores // workers``; the encoder, one per process
running one batch at a time, gets all of them (torch's own default, its physical
cores, unless ``$ACTALIGN_TORCH_THREADS`` or a Dask worker's ``nthreads`` says otherwise).
Between regions its OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``, set by ``import
actalign`` unless the user set it): left to spin, they took the cores of the decoders
that overlap the encoder (the acquire stage's CPU time rose by a third). Each video
decoder gets its share of the cores too: FFmpeg's default, a thread per core for
every decoder, put two shards' four decoders in a dozen threads on two cores, and
on small videos their hand-offs cost more than they gained (200 small videos
decoded by two decoders: 1.05 CPU s with FFmpeg's threads, 0.82 with one each).
And at most a core's worth of videos decode at once in a process, whatever the
number of shards in flight (``actalign.encode_stream``): four shards' eight
decoders on two cores fed the encoder 10 % fewer frames per second than one
shard's two.

The cores are those this process may run on (``os.sched_getaffinity``), or on a
Dask worker its ``nthreads``: the cores it claims, which is also how many tasks it
runs at once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

from actalign.registry import torch_threads


@dataclass(frozen=True)
class ThreadBudget:
    """Threads per stage body: ``workers`` bodies at once share ``cores``."""

    cores: int  # cores this process may use
    workers: int  # stage bodies running at once in this process
    blas: int  # BLAS threads per stage body: 1 (NumPy's OpenBLAS; set process-wide, the same for every body)
    numba: int  # threads of a parallel numba region started by a stage body (the DP kernels are serial)
    torch: int | None  # the encoder's intra-op threads (one encoder per process, one batch at a time); None: torch's default
    source: str  # where ``cores`` came from: "affinity" or "dask-worker"

    def decoder_threads(self, decoders: int) -> int:
        """FFmpeg threads for each of a stage body's ``decoders`` video decoders: their share of the cores."""
        return max(1, self.cores // (self.workers * max(1, decoders)))

    def record(self) -> dict[str, Any]:
        """The budget as plain values, for the run record."""
        return asdict(self)


def dask_worker_threads() -> int | None:
    """The ``nthreads`` of the Dask worker running this code; None outside a Dask worker."""
    if "distributed" not in sys.modules:  # only a process that imported distributed can be a Dask worker
        return None
    from distributed import get_worker

    try:
        return max(1, get_worker().state.nthreads)
    except ValueError:  # not inside a Dask worker
        return None


def process_cores() -> tuple[int, str]:
    """The cores this process may use and where that came from: a Dask worker's ``nthreads``, else the affinity mask."""
    if (nthreads := dask_worker_threads()) is not None:
        return nthreads, "dask-worker"
    return _affinity_cores(), "affinity"


def budget_for(workers: int) -> ThreadBudget:
    """The budget of ``workers`` stage bodies at once (``RunConfig.workers``) in this process.

    On a Dask worker its ``nthreads`` is both the cores and the concurrency, whatever ``workers`` says.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cores, source = process_cores()
    if source == "dask-worker":
        workers = cores
    share = max(1, cores // workers)
    return ThreadBudget(cores=cores, workers=workers, blas=1, numba=min(share, _numba_ceiling()), torch=torch_threads(), source=source)


def apply(budget: ThreadBudget) -> ThreadBudget:
    """Hold this process (BLAS, torch when loaded) and the calling thread (numba) to ``budget``; returns it.

    Idempotent, and never undone: every stage body of a run computes the same budget,
    so concurrent bodies set the same process-wide limits (a context manager that
    restored them on exit would lift the limit under a body still running). Call it
    in the thread that runs the body: once a worker thread has set OpenBLAS's limit,
    OpenBLAS ignores a change made from another thread.
    """
    _blas_controller().limit(limits=budget.blas, user_api="blas")  # torch's own pools are set below, not here
    import numba

    if numba.get_num_threads() != budget.numba:
        numba.set_num_threads(budget.numba)
    if budget.torch is not None and "torch" in sys.modules:  # never import torch for this: only the encoding stages load it
        import torch

        if torch.get_num_threads() != budget.torch:
            torch.set_num_threads(budget.torch)
    return budget


_controller: tuple[int, Any] | None = None  # (modules loaded when made, threadpoolctl's ThreadpoolController)


def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded libraries, looked for again only after an import (which may load
    one): looking takes milliseconds, and every stage body of every shard applies its budget."""
    global _controller
    if _controller is None or _controller[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _controller = (len(sys.modules), ThreadpoolController())
    return _controller[1]


def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform (macOS, Windows)
        return os.cpu_count() or 1


def _numba_ceiling() -> int:
    """numba's threads cannot exceed the pool it was started with (NUMBA_NUM_THREADS)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)
