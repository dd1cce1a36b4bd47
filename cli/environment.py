"""Process settings that must be in place before Prefect is imported."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The temporary local server can take more than the default 20 s to start on a busy machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def prepare_prefect(workdir: Path, verbose: bool) -> None:
    """Keep Prefect's database in the workdir (unless PREFECT_HOME is set) and its logs quiet by default."""
    root = workdir.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)  # Prefect cannot create its home under a missing folder
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")


TEMPORARY_SERVER_HELP = (
    "starting Prefect's temporary server (10 to 30 s, every run); to skip it, keep one running "
    "(`prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api"
)


def start_prefect(working: Callable[[str], AbstractContextManager[None]]) -> None:
    """Import the flow and start Prefect's temporary server now, announced by ``working``, when PREFECT_API_URL names none.

    Prefect would start it silently on the flow's first call; the server is per process
    (one instance), so the flow then uses this one.
    """
    with working("starting Prefect ..."):
        from prefect.settings import PREFECT_API_URL

        import actalign.flows.pipeline  # noqa: F401 - imported here, inside the announcement
    if PREFECT_API_URL.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    with working(TEMPORARY_SERVER_HELP):
        SubprocessASGIServer().start()


def quiet_libraries() -> None:
    """No per-load progress bars or config chatter from transformers on a user's screen."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
