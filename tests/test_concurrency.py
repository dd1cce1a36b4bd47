"""Two writers on one workdir, readers beside writers and other DuckDB clients, and workdir paths with
glob characters (issue 15).

Each attack uses the real pieces: the `actalign` command in processes of its own (`python -m
actalign.cli.main`, as tests/test_recovery.py runs it), real Parquet files, DuckDB connections held by
other processes, and for the two runs real Prefect flows, each on its own temporary server over one
PREFECT_HOME. A test process holding the write lock stands for a writer where timing must be exact.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from prefect_server import stop_group, tail

from actalign.queries.runner import run_sql
from actalign.storage import schemas
from actalign.storage.lock import LOCK_NAME, write_lock
from actalign.storage.parquet import write_atomic
from actalign.storage.records import RunRecord, write_run
from actalign.storage.workdir import SCHEMA, Workdir

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "actalign.cli.main"]
TIMEOUT_S = 600  # for one command; generous on a loaded 2-core machine
RUN = "20260101-000000-mine00"
HOLDER = "20260101-000000-holder"
ENV = dict(os.environ, COLUMNS="1000")  # conftest's offline hub, model cache and Prefect home; rich wraps at COLUMNS


def actalign(*args: object) -> subprocess.CompletedProcess:
    """`actalign ARGS` in a process of its own, lines never wrapped; stdout and stderr together in ``.stdout``."""
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)


def flat(text: str) -> str:
    """The text with every run of whitespace as one space: table cells and wrapped lines read whole."""
    return " ".join(text.split())


def write_runs(root: Path, runs: dict[str, int]) -> Workdir:
    """A workdir whose completed runs each scored ``n`` labelled videos against 3 candidates (label first)."""
    workdir = Workdir.open(root)
    for i, (run_id, n) in enumerate(runs.items()):
        started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i)
        write_run(workdir, RunRecord(run_id, started, "generated", True, {"scorers": ["actalign"]}, state="completed", n_videos=n))
        videos = [{"run_id": run_id, "video_id": f"v{v}", "source": f"/v{v}.mp4", "start_s": None, "end_s": None, "domain": None,
                   "candidates": ["a", "b", "c"], "label": "a"} for v in range(n)]
        write_atomic(pa.Table.from_pylist(videos, schema=schemas.VIDEOS), workdir.videos_path(run_id))
        scores = [{"run_id": run_id, "video_id": f"v{v}", "candidate": c, "scorer": "actalign", "score": s, "path_len": 3}
                  for v in range(n) for c, s in zip("abc", (0.9, 0.5, 0.1))]
        write_atomic(pa.Table.from_pylist(scores, schema=schemas.SCORES), workdir.scores_path(run_id, "00000"))
    return workdir


def wait_for_text(log: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while text not in flat(log.read_text(errors="replace")):
        assert process.poll() is None, f"ended (rc={process.returncode}) without saying {text!r}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {text!r} after {TIMEOUT_S} s:\n{tail(log)}"
        time.sleep(0.2)


# --------------------------------------------------------------------------- one writer per workdir


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_runs_started_at_once_on_one_workdir_both_complete_one_after_the_other(demo_dataset, tmp_path):
    manifest, classes = demo_dataset
    n_videos = sum(1 for line in manifest.read_text().splitlines()[1:] if line.strip())
    workdir = tmp_path / "work"
    env = {key: value for key, value in ENV.items() if key != "PREFECT_API_URL"}  # each run starts Prefect's temporary server
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # one Prefect database for both
    command = [*CLI, "run", "--videos", str(manifest), "--classes", str(classes), "--model", "tiny-random", "--workdir", str(workdir), "--shard-size", "2"]
    logs = [tmp_path / f"run-{i}.log" for i in range(2)]
    progress = [tmp_path / f"run-{i}.err" for i in range(2)]
    processes = []
    try:
        for log, err in zip(logs, progress):
            with open(log, "wb") as out, open(err, "wb") as errors:
                processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=errors, start_new_session=True))
        codes = [process.wait(timeout=TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            stop_group(process, waits=())
    assert codes == [0, 0], "\n\n".join(tail(log) + tail(err) for log, err in zip(logs, progress))
    steps = ("acquire (decode + encode)", "scripts and text embeddings", "score", "views and report")
    for log, err in zip(logs, progress):  # every step shows its progress on stderr; stdout keeps only the results
        shown = err.read_text(errors="replace")
        assert all(step in shown for step in steps), shown
        assert not [step for step in steps[:2] + steps[3:] if step in log.read_text(errors="replace")]

    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:  # any DuckDB client
        runs = con.execute("SELECT run_id, pid, state, started_at, finished_at FROM runs ORDER BY started_at").fetchall()
        assert [state for _, _, state, _, _ in runs] == ["completed", "completed"], runs
        (first, first_pid, _, _, first_end), (second, second_pid, _, second_start, _) = runs
        assert first_end <= second_start, f"the runs overlapped: {runs}"
        assert first < second, "run ids sort by start time: the waiting run named itself once it had the lock"
        predictions = []
        for run_id in (first, second):
            rows, distinct = con.execute(
                "SELECT count(*), count(DISTINCT (video_id, candidate, scorer)) FROM scores WHERE run_id = ?", [run_id]).fetchone()
            assert rows == distinct == n_videos * n_videos * 2, (run_id, rows, distinct)  # 6 candidates, mean-pool and actalign
            predictions.append(con.execute("SELECT video_id, scorer, predicted FROM predictions WHERE run_id = ? ORDER BY ALL", [run_id]).fetchall())
        assert predictions[0] == predictions[1]

    output = {process.pid: flat(log.read_text(errors="replace") + err.read_text(errors="replace")) for process, log, err in zip(processes, logs, progress)}
    assert f"is being written by run {first} (pid {first_pid} on this host" in output[second_pid], output[second_pid]
    assert "waiting for it to finish" in output[second_pid]
    assert "waiting for it to finish" not in output[first_pid]
    assert (workdir / LOCK_NAME).read_text() == ""  # released: it names no one


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_a_second_writer_waits_for_the_first_or_exits_2_naming_it(demo_dataset, tmp_path):
    manifest, classes = demo_dataset
    workdir = tmp_path / "work"
    run_options = ["--videos", manifest, "--classes", classes, "--model", "tiny-random", "--workdir", workdir]
    holder = f"is being written by run {HOLDER} (pid {os.getpid()} on this host"
    log = tmp_path / "gc.log"
    with write_lock(workdir, "run", lambda: HOLDER):
        # `run` first: its checks before the lock build tiny-random, which `status` then reads
        for command in (["run", *run_options], ["status", *run_options], ["gc", "--workdir", workdir]):
            result = actalign(*command, "--no-wait")
            assert result.returncode == 2, result.stdout
            assert holder in flat(result.stdout) and "not waiting (--no-wait)" in flat(result.stdout), result.stdout
        runs = workdir / "runs"
        assert not runs.exists() or {p.name for p in runs.iterdir()} <= {SCHEMA}, "a refused run left a record"

        with open(log, "wb") as out:
            waiting = subprocess.Popen([*CLI, "gc", "--workdir", str(workdir)], cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_text(log, "waiting for it to finish", waiting)
            time.sleep(1.0)
            assert waiting.poll() is None, f"gc did not wait for the lock:\n{tail(log)}"
        except BaseException:
            waiting.kill()
            raise
    assert waiting.wait(timeout=TIMEOUT_S) == 0, tail(log)
    output = flat(log.read_text())
    assert holder in output and output.count("waiting for it to finish") == 1, output
    assert "deleted" in output


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(ended.stdout)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_a_lock_left_by_a_dead_process_is_taken_over_and_one_of_another_host_is_trusted(tmp_path):
    workdir = write_runs(tmp_path / "work", {RUN: 2})
    lock = workdir.root / LOCK_NAME
    pid = dead_pid()
    lock.write_text(json.dumps({"run_id": "20260101-000000-crash0", "command": "run", "host": socket.gethostname(), "pid": pid, "since": "2026-01-01T00:00:00+00:00"}))
    result = actalign("gc", "--no-wait", "--workdir", workdir.root)
    assert result.returncode == 0, result.stdout
    assert f"left by run 20260101-000000-crash0 (pid {pid} on this host" in flat(result.stdout) and "that process is gone" in flat(result.stdout)
    assert lock.read_text() == ""

    lock.write_text(json.dumps({"run_id": None, "command": "gc", "host": "elsewhere.example", "pid": 4242, "since": "2026-01-01T00:00:00+00:00"}))
    result = actalign("gc", "--no-wait", "--workdir", workdir.root)
    assert result.returncode == 2, result.stdout
    message = flat(result.stdout)
    assert "actalign gc (pid 4242 on host elsewhere.example" in message and "cannot be checked from here" in message
    assert f"delete {lock}" in message, message


# --------------------------------------------------------------------------- readers and other DuckDB clients

HOLD_DATABASE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: DuckDB then refuses every other process, read-only ones too
con.execute("CREATE OR REPLACE TABLE notes AS SELECT 'mine' AS note")
print("holding", flush=True)
time.sleep(600)
"""


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_readers_work_while_another_program_holds_the_database_and_never_take_the_write_lock(tmp_path):
    workdir = write_runs(tmp_path / "work", {RUN: 4})
    assert actalign("gc", "--workdir", workdir.root).returncode == 0  # a writing command creates actalign.duckdb
    holder = subprocess.Popen([sys.executable, "-c", HOLD_DATABASE, str(workdir.db_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException, match="lock"):  # what `actalign sql` used to meet: exit code 2
            duckdb.connect(str(workdir.db_path), read_only=True)

        result = actalign("sql", "--workdir", workdir.root, "SELECT 'scores=' || count(*) AS n FROM scores")
        assert result.returncode == 0 and "scores=12" in result.stdout, result.stdout

        gc = actalign("gc", "--workdir", workdir.root)  # a writer carries on; only the views in that file wait for it
        assert gc.returncode == 0, gc.stdout
        assert f"the views in {workdir.db_path} were not refreshed (IO Error: Could not set lock" in flat(gc.stdout), gc.stdout

        with write_lock(workdir.root, "run", lambda: HOLDER):  # a writer at work: readers do not wait for it
            result = actalign("sql", "--workdir", workdir.root, "SELECT 'runs=' || count(*) AS n FROM runs")
            assert result.returncode == 0 and "runs=1" in result.stdout, result.stdout
            assert "waiting" not in result.stdout
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_sql_cannot_change_the_views_and_a_view_changed_elsewhere_is_put_back(tmp_path):
    workdir = write_runs(tmp_path / "work", {RUN: 4})
    accuracy = "SELECT 'top1=' || top1 || ' n=' || n AS a FROM accuracy"
    changed = actalign("sql", "--workdir", workdir.root, "CREATE OR REPLACE VIEW accuracy AS SELECT 1 AS x")
    assert changed.returncode == 0, changed.stdout  # it lasted for that command only
    assert not workdir.db_path.exists(), "a reader opened actalign.duckdb"
    result = actalign("sql", "--workdir", workdir.root, accuracy)
    assert result.returncode == 0 and "top1=1.0 n=4" in result.stdout, result.stdout
    report = actalign("report", "--workdir", workdir.root, "--worst", "0", "--format", "json")
    assert report.returncode == 0, report.stdout
    rows = json.loads(workdir.run_dir(RUN).joinpath("report.json").read_text())["tables"]["accuracy"]["rows"]
    assert [(row["scorer"], row["top1"], row["n"]) for row in rows] == [("actalign", 1.0, 4)]

    assert actalign("gc", "--workdir", workdir.root).returncode == 0  # a writing command creates actalign.duckdb
    with duckdb.connect(str(workdir.db_path)) as con:  # a user's own client changes a view there
        con.execute("CREATE OR REPLACE VIEW accuracy AS SELECT 1 AS x")
    result = actalign("sql", "--workdir", workdir.root, accuracy)
    assert result.returncode == 0 and "top1=1.0 n=4" in result.stdout, result.stdout  # actalign never reads that file
    assert actalign("gc", "--workdir", workdir.root).returncode == 0  # the next writing command puts the view back
    with duckdb.connect(str(workdir.db_path), read_only=True) as con:
        assert con.execute("SELECT top1, n FROM accuracy").fetchall() == [(1.0, 4)]


# --------------------------------------------------------------------------- glob characters in the workdir's path


@pytest.mark.parametrize(("name", "sibling"), [("a[1]", "a1"), ("b*", "bx")])
def test_views_read_only_their_own_workdir_whatever_its_path(tmp_path, name, sibling):
    mine = write_runs(tmp_path / name / "work", {RUN: 2})
    write_runs(tmp_path / sibling / "work", {"20260101-000000-other0": 5, "20260101-000000-other1": 1})  # what a glob would also match
    query = "SELECT run_id, count(*) FROM scores GROUP BY run_id"
    assert run_sql(mine, query).rows == [(RUN, 6)]  # actalign's readers
    gc = actalign("gc", "--workdir", mine.root)  # a writing command makes the views in actalign.duckdb
    assert gc.returncode == 0, gc.stdout
    with duckdb.connect(str(mine.db_path), read_only=True) as con:  # any DuckDB client
        assert con.execute(query).fetchall() == [(RUN, 6)]
        assert con.execute("SELECT count(*) FROM videos").fetchone() == (2,)


@pytest.mark.parametrize("name", ["c?", "a\\b"])
def test_a_workdir_path_duckdb_mishandles_is_refused_before_any_work(tmp_path, name):
    result = actalign("config", "--videos", "v.csv", "--classes", "c.yaml", "--workdir", tmp_path / name / "work")
    assert result.returncode == 2 and "DuckDB cannot work under a path with" in flat(result.stdout), result.stdout
