"""Shared fixtures. The environment is set before anything imports Prefect or transformers:
offline hub (a hub id would otherwise hang for minutes), a private model cache and Prefect home.

Under pytest-xdist (``make test`` runs two workers) the model cache is shared by the run's
workers, so the toy model is trained once (``built_model_path`` locks across processes);
each worker keeps its own Prefect home."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="actalign-tests-"))
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of one run
_CACHE = Path(tempfile.gettempdir()) / f"actalign-tests-{_RUN_ID}" / "cache" if _RUN_ID else _SESSION_DIR / "cache"
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
        "ACTALIGN_CACHE": str(_CACHE),
    }
)

import pytest  # noqa: E402

CLIPS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "clips"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session. Its new database starts as a copy of one already
    migrated (``migrated_prefect_database``): migrating is most of the 11 s a harness takes to start."""
    from prefect.testing import utilities

    template, new_folder = migrated_prefect_database(), utilities.mkdtemp

    def seeded_folder() -> str:  # where the harness puts its database, prefect-test.db; unused if Prefect renames it
        folder = new_folder()
        shutil.copyfile(template, Path(folder) / "prefect-test.db")
        return folder

    with ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(utilities, "mkdtemp", seeded_folder)
            stack.enter_context(utilities.prefect_test_harness(server_startup_timeout=120))
        yield


def migrated_prefect_database() -> Path:
    """An empty Prefect database migrated to this Prefect version's schema, made once per machine and version
    (about 10 s) and shared by every test process; a server started on a copy skips the migrations."""
    path = Path(tempfile.gettempdir()) / "actalign-tests-prefect" / f"prefect-{version('prefect')}.db"
    if path.exists():
        return path
    path.parent.mkdir(exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be making it
        if not path.exists():
            partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            database = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{partial}"}
            subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"], env={**os.environ, **database},
                           check=True, capture_output=True, timeout=600)
            os.replace(partial, path)
    return path


@pytest.fixture(scope="session")
def local_prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """(API URL, environment pointing at it) of one `prefect server start` on 127.0.0.1, shared by the tests
    that run separate processes (CLI runs, a worker); services on, since deployment triggers need them."""
    from prefect_server import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect-server"), "--no-ui") as served:
        yield served


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest, classes file) of the generated demo set: 6 classes, one video each."""
    from actalign.demo_data import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo"), videos_per_class=1)


@pytest.fixture(scope="session")
def toy_shapes() -> Path:
    """The trained toy model's folder: trained once per session (a few minutes) into the session's cache."""
    from actalign.toy_model import toy_shapes_path

    return toy_shapes_path()
