"""Crash recovery (issue 7): SIGKILL the whole pipeline process at moments spread across its stages,
run it again, and check that the final tables equal those of an uninterrupted run.

The pipeline runs as a real separate process (`python -m actalign.cli.main run`, i.e. `actalign run`), in its own
session so that the kill reaches every process it may have started. The session's `prefect server start`
(conftest's ``local_prefect_server``) serves every run, so no run pays the temporary server's start. The
reference (uninterrupted) run goes in its own workdir, beside the crash attempts.

Kill moments are chosen on observable progress in the workdir (polled every 20 ms), each followed by a
small seeded random delay, in ONE workdir: every attempt reuses what the earlier ones stored, so the
triggers are ordered from the store's first files to the end of a run. The stage a kill really hit is
not taken from its trigger but read back from what the killed process left on disk (``_stage``).
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from prefect_server import stop_group, tail

from actalign.storage.workdir import SCHEMA

REPO = Path(__file__).resolve().parents[1]
SHARD_SIZE = 2
POLL_S = 0.02
ATTEMPT_TIMEOUT_S = 180
SCORE_TOLERANCE = 1e-6  # scores may differ in the last float bits when frames were batched differently

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- running the pipeline


def _command(manifest: Path, classes: Path, workdir: Path) -> list[str]:
    # `python -m actalign.cli.main` from the repository root runs this checkout's code (as `.venv/bin/actalign` does here).
    return [sys.executable, "-m", "actalign.cli.main", "run", "--videos", str(manifest), "--classes", str(classes), "--model", "tiny-random",
            "--workdir", str(workdir), "--shard-size", str(SHARD_SIZE)]


def _start(command: list[str], api_url: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PREFECT_API_URL=api_url)  # conftest's offline hub, model cache, Prefect home
    with open(log, "wb") as handle:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _run_to_end(command: list[str], api_url: str, log: Path) -> tuple[int, float]:
    started = time.monotonic()
    process = _start(command, api_url, log)
    try:
        rc = process.wait(timeout=ATTEMPT_TIMEOUT_S)
    finally:
        stop_group(process, waits=())
    return rc, time.monotonic() - started



# --------------------------------------------------------------------------- what is on disk


def _store_files(workdir: Path, table: str) -> set[str]:
    folder = workdir / "store" / table
    return {p.name for p in folder.glob("*.parquet") if p.stem != SCHEMA} if folder.is_dir() else set()


def _run_dirs(workdir: Path) -> set[str]:
    runs = workdir / "runs"
    return {p.name for p in runs.iterdir() if p.is_dir() and p.name != SCHEMA} if runs.is_dir() else set()


def _temporary_files(workdir: Path) -> list[str]:
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob(".*") if p.is_file() and ".tmp" in p.name)


def _unreadable_parquet(workdir: Path) -> list[str]:
    """Every file named *.parquet must be a complete Parquet file (a partial one must never look complete)."""
    bad = []
    for path in sorted(workdir.rglob("*.parquet")):
        try:
            pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - report any reader failure
            bad.append(f"{path.relative_to(workdir)}: {type(exc).__name__}: {exc}")
    return bad


def _run_state(run_dir: Path) -> str | None:
    record = run_dir / "run.parquet"
    return pq.read_table(record).column("state")[0].as_py() if record.exists() else None


def _stage(run_dir: Path | None, n_shards: int) -> str:
    """The stage the pipeline was in when it died, read from what it left (see pipeline.py's order:
    run record -> scripts, texts and acquire shards -> score shards -> views, report -> 'completed' record)."""
    if run_dir is None or not (run_dir / "run.parquet").exists():
        return "startup"  # importing, reading inputs, loading the model: no run record yet
    status = run_dir / "status"
    if not list(status.glob("scripts-*.parquet")):
        return "scripts"  # planning, writing scripts (acquire shards may have started beside them)
    if len(list(status.glob("acquire-*.parquet"))) < n_shards:
        return "acquire"  # texts and acquire shards run side by side
    if len(list(status.glob("score-*.parquet"))) < n_shards:
        return "score"
    if _run_state(run_dir) == "completed":  # recorded last, after the views and the report
        return "exit"
    if not (run_dir / "report.md").exists():
        return "report" if any((run_dir / "figures").glob("*")) else "views"
    return "finalize"


# --------------------------------------------------------------------------- the kill schedule


@dataclass
class Watch:
    """What an attempt sees: its start time, the store before it started, its own run folder."""

    workdir: Path
    started: float
    before: dict[str, set[str]]
    runs_before: set[str]
    n_videos: int

    def run_dir(self) -> Path | None:
        new = _run_dirs(self.workdir) - self.runs_before
        return self.workdir / "runs" / sorted(new)[-1] if new else None

    def new_files(self, table: str) -> set[str]:
        return _store_files(self.workdir, table) - self.before[table]


def _run_file(pattern: str) -> Callable[[Watch], bool]:
    def condition(watch: Watch) -> bool:
        run_dir = watch.run_dir()
        return run_dir is not None and any(p.stem != SCHEMA for p in run_dir.glob(pattern))

    return condition


def _all_status(stage: str) -> Callable[[Watch], bool]:
    def condition(watch: Watch) -> bool:
        run_dir = watch.run_dir()
        return run_dir is not None and len(list((run_dir / "status").glob(f"{stage}-*.parquet"))) >= math.ceil(watch.n_videos / SHARD_SIZE)

    return condition


@dataclass
class Trigger:
    name: str
    condition: Callable[[Watch], bool]
    max_delay_s: float  # a random extra delay in [0, max_delay_s] after the condition holds


# In the order they must happen in one workdir (store triggers first: later attempts reuse the store).
# The delays are capped by how long each stage lasts on the 6 demo videos (acquire: ~0.1 s).
TRIGGERS = [
    Trigger("right after start", lambda w: time.monotonic() - w.started >= 0.3, 2.7),
    Trigger("first script or step embedding stored", lambda w: bool(w.new_files("scripts") or w.new_files("step_embeddings")), 0.05),
    Trigger("first frame embeddings stored", lambda w: bool(w.new_files("frame_embeddings")), 0.03),
    # Fires on this attempt's first new frame file even when it was the last one missing: waiting for
    # "more but not all" can miss (two shards write at once), and a run left to finish would also fill
    # the score cache, so that the next attempt's scoring is over before it can be killed.
    Trigger("more frame embeddings stored", lambda w: bool(w.new_files("frame_embeddings")), 0.0),
    Trigger("every acquire shard done (scoring)", _all_status("acquire"), 0.3),
    # The first attempt to get here creates actalign.duckdb (and its WAL): a kill may land mid-write.
    Trigger("every score shard done (views, report)", _all_status("score"), 0.3),
    Trigger("report.md written", _run_file("report.md"), 0.3),
]


@dataclass
class Attempt:
    trigger: str
    killed: bool = False
    rc: int | None = None
    at_s: float = 0.0  # since the attempt started
    stage: str = ""
    run_id: str | None = None
    run_state: str | None = None
    frames_stored: int = 0
    database: str = ""  # which of actalign.duckdb and its WAL the killed process left
    temporary: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def line(self) -> str:
        what = f"KILLED at {self.at_s:5.2f} s in stage {self.stage:<8}" if self.killed else f"exited rc={self.rc} at {self.at_s:5.2f} s (not a kill)"
        return (f"{self.trigger:<40} {what}  run={self.run_id} state={self.run_state} frames={self.frames_stored}"
                f" db={self.database or '-'} tmp={len(self.temporary)}")


def _attempt(command: list[str], api_url: str, workdir: Path, trigger: Trigger, rng: random.Random, n_videos: int, log: Path) -> Attempt:
    watch = Watch(
        workdir, time.monotonic(),
        {table: _store_files(workdir, table) for table in ("scripts", "step_embeddings", "frame_embeddings", "pair_scores")},
        _run_dirs(workdir), n_videos,
    )
    delay = rng.uniform(0.0, trigger.max_delay_s)
    process = _start(command, api_url, log)
    attempt = Attempt(trigger.name)
    try:
        fired_at = None
        while process.poll() is None:
            now = time.monotonic()
            if now - watch.started > ATTEMPT_TIMEOUT_S:
                raise AssertionError(f"attempt {trigger.name!r} still running after {ATTEMPT_TIMEOUT_S} s:\n{tail(log)}")
            if fired_at is None and trigger.condition(watch):
                fired_at = now
            if fired_at is not None and now - fired_at >= delay:
                os.killpg(process.pid, signal.SIGKILL)
                attempt.killed = True
                break
            time.sleep(POLL_S)
        attempt.at_s = time.monotonic() - watch.started
    finally:
        stop_group(process, waits=())
    if not attempt.killed:
        attempt.rc = process.returncode
    run_dir = watch.run_dir()
    attempt.stage = _stage(run_dir, math.ceil(n_videos / SHARD_SIZE))
    attempt.run_id = run_dir.name if run_dir else None
    attempt.run_state = _run_state(run_dir) if run_dir else None
    attempt.frames_stored = len(_store_files(workdir, "frame_embeddings"))
    attempt.database = "+".join(name for name in ("actalign.duckdb", "actalign.duckdb.wal") if (workdir / name).exists())
    attempt.temporary = _temporary_files(workdir)
    attempt.unreadable = _unreadable_parquet(workdir)
    return attempt


# --------------------------------------------------------------------------- reading the tables


def _rows(con: duckdb.DuckDBPyConnection, sql: str, *params) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def _latest_completed(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "SELECT run_id FROM runs WHERE state = 'completed' ORDER BY started_at DESC LIMIT 1")
    assert rows, "no completed run in the runs view"
    return rows[0][0]


def _rounded(row: tuple, digits: int = 6) -> tuple:
    return tuple(round(v, digits) if isinstance(v, float) else v for v in row)


def _embeddings(con: duckdb.DuckDBPyConnection, sql: str) -> dict[tuple, np.ndarray]:
    return {tuple(row[:-1]): np.asarray(row[-1], dtype=np.float32) for row in _rows(con, sql)}


@dataclass
class Tables:
    run_id: str
    scores: dict[tuple, list[float]]  # (video, candidate, scorer) -> every score row of the run
    predictions: list[tuple]
    accuracy: list[tuple]
    frames: Counter  # (video_id, frame_idx, t_s, frames_key) -> rows
    frame_vectors: dict[tuple, np.ndarray]
    scripts: Counter
    steps: Counter
    step_vectors: dict[tuple, np.ndarray]
    failed_status: list[tuple]
    status_items: set[tuple]


def _tables(workdir: Path, run_id: str | None = None) -> Tables:
    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:
        run_id = run_id or _latest_completed(con)
        scores: dict[tuple, list[float]] = {}
        for video, candidate, scorer, score in _rows(con, "SELECT video_id, candidate, scorer, score FROM scores WHERE run_id = ?", run_id):
            scores.setdefault((video, candidate, scorer), []).append(score)
        return Tables(
            run_id=run_id,
            scores=scores,
            predictions=sorted(_rounded(r) for r in _rows(
                con, "SELECT video_id, scorer, predicted, label, top_score, true_score, n_candidates, true_rank, margin FROM predictions WHERE run_id = ?", run_id)),
            accuracy=sorted(_rounded(r) for r in _rows(
                con, "SELECT scorer, n_labelled, n, n_missing, top1, top1_lo, top1_hi, top2, top3, random_top1, random_top2, random_top3 "
                     "FROM accuracy WHERE run_id = ?", run_id)),
            frames=Counter(_rows(con, "SELECT video_id, frame_idx, t_s, frames_key FROM frame_embeddings")),
            frame_vectors=_embeddings(con, "SELECT video_id, frame_idx, embedding FROM frame_embeddings"),
            scripts=Counter(_rows(con, "SELECT class_id, kind, step_idx, text, script_key FROM scripts")),
            steps=Counter(_rows(con, "SELECT class_id, kind, step_idx, text, embed_key FROM step_embeddings")),
            step_vectors=_embeddings(con, "SELECT embed_key, kind, step_idx, embedding FROM step_embeddings"),
            failed_status=_rows(con, "SELECT stage, item, error_class, message FROM status WHERE run_id = ? AND state = 'failed'", run_id),
            status_items=set(_rows(con, "SELECT stage, item FROM status WHERE run_id = ? AND state IN ('ok', 'skipped')", run_id)),
        )


def _run_states(workdir: Path) -> dict[str, str]:
    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:
        return dict(_rows(con, "SELECT run_id, state FROM runs"))


def _vectors_differ(a: dict[tuple, np.ndarray], b: dict[tuple, np.ndarray], atol: float = 1e-5) -> list:
    return [key for key in a.keys() & b.keys() if a[key].shape != b[key].shape or not np.allclose(a[key], b[key], atol=atol, rtol=0)]


# --------------------------------------------------------------------------- the test


STAGES_BEFORE_COMPLETION = ("scripts", "acquire", "score", "views", "report", "finalize")  # before its record said 'completed'


def test_sigkill_at_any_moment_then_rerun_gives_the_uninterrupted_tables(demo_dataset, local_prefect_server, tmp_path):
    manifest, classes = demo_dataset
    prefect_api, _ = local_prefect_server
    n_videos = sum(1 for line in manifest.read_text().splitlines()[1:] if line.strip())
    seed = int(os.environ.get("ACTALIGN_RECOVERY_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    print(f"\nrecovery seed: {seed} (ACTALIGN_RECOVERY_SEED={seed} repeats these delays)")
    test_started = time.monotonic()

    # The reference: one uninterrupted run in its own workdir, beside the crash attempts (they share
    # nothing but the model cache, whose tiny model is built race-free; kill stages are read back from
    # disk, so the load it adds only moves the moments).
    reference_dir = tmp_path / "reference"
    reference = _start(_command(manifest, classes, reference_dir), prefect_api, tmp_path / "reference.log")
    try:
        # The crash runs, in one workdir.
        crash_dir = tmp_path / "crash"
        command = _command(manifest, classes, crash_dir)
        attempts = []
        for i, trigger in enumerate(TRIGGERS):
            attempt = _attempt(command, prefect_api, crash_dir, trigger, rng, n_videos, tmp_path / f"attempt-{i}.log")
            attempts.append(attempt)
            print(f"attempt {i}: {attempt.line()}")
            if attempt.temporary:
                print(f"           temporary files left: {attempt.temporary}")
            assert not attempt.unreadable, f"after attempt {i} ({attempt.line()}) these *.parquet files do not read:\n" + "\n".join(attempt.unreadable)
            if not attempt.killed:
                assert attempt.rc == 0, f"attempt {i} ended by itself with rc={attempt.rc}:\n{tail(tmp_path / f'attempt-{i}.log')}"
        rc = reference.wait(timeout=ATTEMPT_TIMEOUT_S)
    finally:
        stop_group(reference, waits=())
    assert rc == 0, f"the reference run failed (rc={rc}):\n{tail(tmp_path / 'reference.log')}"

    # The final run, to completion.
    rc, seconds = _run_to_end(command, prefect_api, tmp_path / "final.log")
    assert rc == 0, f"the final run after the kills failed (rc={rc}):\n{tail(tmp_path / 'final.log')}"
    print(f"final run: {seconds:.1f} s; whole test so far {time.monotonic() - test_started:.1f} s")

    kills = [a for a in attempts if a.killed]
    stages = Counter(a.stage for a in kills)
    print(f"kills: {len(kills)} in stages {dict(stages)}")
    assert len(kills) >= 5, f"only {len(kills)} kills happened:\n" + "\n".join(a.line() for a in attempts)
    assert len(stages) >= 3, f"kills landed in only {sorted(stages)}:\n" + "\n".join(a.line() for a in attempts)

    # No partial file is read; temporary leftovers are listed (`actalign gc` removes them), never named *.parquet.
    for workdir in (crash_dir, reference_dir):
        assert not _unreadable_parquet(workdir), _unreadable_parquet(workdir)
        leftovers = _temporary_files(workdir)
        print(f"temporary files left in {workdir.name}: {leftovers or 'none'}")
        assert not [name for name in leftovers if name.endswith(".parquet")], leftovers
        placeholder = f"{SCHEMA}.parquet"  # the views' zero-row schema files (storage.workdir), not leftovers
        hidden_parquet = sorted(str(p.relative_to(workdir)) for p in workdir.rglob(".*.parquet") if p.name != placeholder)
        assert not hidden_parquet, f"temporary-looking files named *.parquet (a glob reads them): {hidden_parquet}"
        # Writes are atomic, so a kill never leaves a damaged store file for the reuse checks to set aside.
        quarantined = sorted(str(p.relative_to(workdir)) for p in (workdir / "quarantine").rglob("*") if p.is_file())
        assert not quarantined, f"store files found damaged after the kills and moved to quarantine/: {quarantined}"

    reference, final = _tables(reference_dir), _tables(crash_dir)
    final_run_dir = _run_dirs(crash_dir) - {a.run_id for a in attempts if a.run_id}
    assert final_run_dir == {final.run_id}, f"the latest completed run {final.run_id} is not the final run {final_run_dir}"

    # Scores: every (video, candidate, scorer) exactly once, the same pairs and scores as the reference.
    duplicated = {key: values for key, values in final.scores.items() if len(values) != 1}
    assert not duplicated, f"duplicated score rows in run {final.run_id}: {duplicated}"
    assert all(len(values) == 1 for values in reference.scores.values())
    missing, extra = reference.scores.keys() - final.scores.keys(), final.scores.keys() - reference.scores.keys()
    assert not missing and not extra, f"score rows missing {sorted(missing)}, extra {sorted(extra)}"
    assert len(final.scores) == n_videos * n_videos * 2  # 6 candidates each, mean-pool and actalign
    different = {key: (reference.scores[key][0], final.scores[key][0]) for key in reference.scores
                 if abs(reference.scores[key][0] - final.scores[key][0]) > SCORE_TOLERANCE}
    assert not different, f"scores differ from the uninterrupted run: {different}"
    rounded = {(*key, round(values[0], 6)) for key, values in final.scores.items()}
    if rounded != {(*key, round(values[0], 6)) for key, values in reference.scores.items()}:
        print("note: scores equal within 1e-6 but not all equal after rounding to 6 digits")

    assert final.predictions == reference.predictions
    assert final.accuracy == reference.accuracy

    # The shared store: the same frames, scripts and texts as the reference, none twice.
    assert final.frames == reference.frames, (
        f"frame_embeddings differ: extra {final.frames - reference.frames}, missing {reference.frames - final.frames}"
    )
    per_frame = Counter((video, idx) for video, idx, _, _ in final.frames.elements())
    assert max(per_frame.values()) == 1, f"frames stored twice: {[k for k, n in per_frame.items() if n > 1]}"
    assert len(_store_files(crash_dir, "frame_embeddings")) == n_videos
    assert not _vectors_differ(reference.frame_vectors, final.frame_vectors)
    assert final.scripts == reference.scripts
    assert final.steps == reference.steps
    assert max(final.steps.values()) == 1
    assert not _vectors_differ(reference.step_vectors, final.step_vectors)

    # The final run: nothing failed, every video acquired and scored.
    assert not final.failed_status, f"failed status rows in the final run: {final.failed_status}"
    assert {item for stage, item in final.status_items if stage == "acquire"} == {v for v, _, _ in final.scores}
    assert {item for stage, item in final.status_items if stage == "score"} == {v for v, _, _ in final.scores}

    # The killed runs stay visible and are never taken for completed ones.
    states = _run_states(crash_dir)
    print("killed runs in the runs view: " + ", ".join(f"{a.run_id}={states.get(a.run_id)} ({a.stage})" for a in kills if a.run_id))
    for attempt in kills:
        if attempt.stage == "startup":
            assert attempt.run_id is None or attempt.run_id not in states  # died before writing its record
        elif attempt.stage in STAGES_BEFORE_COMPLETION:
            assert states.get(attempt.run_id) in ("running", "interrupted"), (
                f"run {attempt.run_id} killed in stage {attempt.stage} shows state {states.get(attempt.run_id)!r}"
            )
        else:  # killed after its record said 'completed' (exit): its tables and report are whole
            assert (crash_dir / "runs" / attempt.run_id / "report.md").exists()
            assert states.get(attempt.run_id) == "completed", (attempt.line(), states.get(attempt.run_id))
            assert len(_tables(crash_dir, attempt.run_id).scores) == n_videos * n_videos * 2
    assert states[final.run_id] == "completed"
    print(f"recovery test: {time.monotonic() - test_started:.1f} s")
