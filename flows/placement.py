"""Where a task may run on a Dask cluster: encoding tasks of a cuda run go to GPU workers only.

A mixed cluster has CPU workers and GPU workers started with ``--resources GPU=1``.
``dask.annotate(resources=...)`` around ``task.submit`` is how prefect-dask passes
a resource request to the scheduler (the Dask client merges the context's
annotations into every task it submits). The annotations live in a context variable
that only a Dask client reads, so under the local thread runner they change nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from actalign.config import RunConfig

GPU_RESOURCES: dict[str, float] = {"GPU": 1}


def encoding_resources(config: RunConfig) -> dict[str, float]:
    """Dask worker resources one encoding task holds: a GPU when the run asks for cuda, else none.

    ``auto`` asks for nothing: the flow cannot know which workers have a GPU, so
    a run that must encode on GPUs says ``--device cuda``.
    """
    return dict(GPU_RESOURCES) if config.device.strip().lower().startswith("cuda") else {}


def encoding_placement(config: RunConfig) -> AbstractContextManager[object]:
    """Wrap the ``submit`` of an encoding task (acquire, texts) in this context."""
    resources = encoding_resources(config)
    if not resources:
        return nullcontext()
    import dask  # only a run that asks for resources pays for the import

    return dask.annotate(resources=resources)
