"""The entrypoint of the deployments in prefect.yaml (on demand, nightly, on a prompt change).

A separate flow because the task runner is chosen by ``run_pipeline`` at call
time, which a deployment of ``pipeline`` itself would bypass. Its only
parameter is the CLI's ``RunConfig``: Prefect checks it against the schema of
this signature when a run is created, and turns it into a ``RunConfig`` (every
validator) before the body starts, so a bad parameter fails the run before any work.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from actalign.config import RunConfig
from actalign.flows.pipeline import run_pipeline


@flow(name="actalign")
def scheduled_pipeline(config: RunConfig) -> dict[str, Any]:
    """Run the pipeline as a nested flow run and return a short summary.

    A stage crash (beyond its retries) fails this run too. Items that failed
    on their own (a private video, an LLM answer that never validated) leave
    the run Completed, as the CLI's exit code 1 does not stop the next run:
    they are in the summary, a warning and the ``status`` view, and the next
    run retries them.
    """
    summary = run_pipeline(config)
    if summary.n_failed:
        get_run_logger().warning(
            "run %s completed with %d failed item(s); see the status view in %s", summary.run_id, summary.n_failed, summary.workdir
        )
    return {
        "run_id": summary.run_id,
        "state": summary.state,
        "n_videos": summary.n_videos,
        "n_failed": summary.n_failed,
        "trained": summary.trained,
        "caveat": summary.caveat,
        "workdir": summary.workdir,
        "report": summary.report,
    }
