"""A real `prefect server start` on 127.0.0.1 for tests that run separate processes (CLI runs, workers).

``background`` starts a process in its own group and, whatever happens, stops the
whole group: SIGINT (a Prefect worker ignores SIGTERM for a while), a second
SIGINT (a worker whose server is gone ignores the first), then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's prefect and actalign commands
STARTUP_TIMEOUT_S = 300  # a loaded 2-core machine; a quiet one is healthy in about 10 s
HEALTH_TIMEOUT_S = 10  # one health request; a busy server answers late, not never


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def stop_group(proc: subprocess.Popen, waits: tuple[float, ...] = (15, 5)) -> None:
    """SIGINT once per entry of ``waits`` (waiting that long), then SIGKILL the group."""
    for wait in waits:
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(wait)
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children the process may have left (flow-run processes)
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def background(command: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment (conftest's offline hub and model cache) with a Prefect home of its own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        # SQLite statements wait their turn behind other writers: the 10 s default fails requests on a loaded machine.
        PREFECT_SERVER_DATABASE_TIMEOUT="60",
        PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT="30",
        **extra,
    )
    return env


@contextmanager
def prefect_server(home: Path, *options: str, **extra_env: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(API URL, environment pointing at it) of a server started on a free port, healthy before use."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = server_env(home, **extra_env)
    log = home / "server.log"
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), *options]
    with background(command, env=env, cwd=home, log=log) as proc:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=HEALTH_TIMEOUT_S) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start:\n{tail(log)}")
            time.sleep(0.2)
        yield api, {**env, "PREFECT_API_URL": api}
