"""The store after accidents and over time: corrupt files are detected and recomputed, killed runs are
marked interrupted, and `actalign gc` removes exactly what no run references."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from actalign.cli.main import app
from actalign.config import RunConfig
from actalign.flows.pipeline import run_pipeline
from actalign.storage.integrity import CORRUPT_NOTE
from actalign.storage.records import RunRecord, mark_interrupted, now, write_run
from actalign.storage.workdir import Workdir

pytestmark = pytest.mark.usefixtures("prefect_harness")


def config_for(demo_dataset, workdir: Path, **overrides) -> RunConfig:
    manifest, classes = demo_dataset
    return RunConfig(videos=manifest, classes=classes, workdir=workdir, model="tiny-random", shard_size=3, **overrides)


def scores(workdir: Path, run_id: str) -> list[tuple]:
    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:
        sql = "SELECT video_id, candidate, scorer, round(score, 6) FROM scores WHERE run_id = ? ORDER BY ALL"
        return con.execute(sql, [run_id]).fetchall()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_a_truncated_store_file_is_reported_and_recomputed(demo_dataset, tmp_path):
    config = config_for(demo_dataset, tmp_path / "work")
    first = run_pipeline(config)
    store = tmp_path / "work" / "store"
    frames = sorted((store / "frame_embeddings").glob("[!._]*.parquet"))[0]
    texts = sorted((store / "step_embeddings").glob("[!._]*.parquet"))[0]
    pairs = sorted((store / "pair_scores").glob("[!._]*.parquet"))[1]
    for path in (frames, texts, pairs):
        truncate(path)

    status = invoke("status", "--videos", config.videos, "--classes", config.classes, "--model", "tiny-random", "--workdir", config.workdir)
    assert status.exit_code == 0, status.output
    with duckdb.connect(str(config.workdir / "actalign.duckdb"), read_only=True) as con:
        corrupt = con.execute("SELECT stage, count(*) FROM freshness WHERE run_id IS NULL AND reason = 'stored file corrupt' GROUP BY 1 ORDER BY 1").fetchall()
    assert corrupt == [("acquire", 1), ("score", 12), ("step_embeddings", 1)]  # a video's frames, one class's texts, one video's score cache

    second = run_pipeline(config)
    assert second.state == "completed" and second.n_failed == 0
    assert second.encoded_frames == 12 and second.reused_videos == 5
    assert scores(config.workdir, second.run_id) == scores(config.workdir, first.run_id)
    for path in (frames, texts, pairs):
        pq.read_table(path)  # recomputed in place
    moved = sorted(p.relative_to(config.workdir / "quarantine").parent for p in (config.workdir / "quarantine").rglob("*.parquet.*"))
    assert moved == [Path("store/frame_embeddings"), Path("store/pair_scores"), Path("store/step_embeddings")]
    with duckdb.connect(str(config.workdir / "actalign.duckdb"), read_only=True) as con:
        notes = con.execute("SELECT stage, count(*) FROM status WHERE run_id = ? AND message = ? GROUP BY 1 ORDER BY 1", [second.run_id, CORRUPT_NOTE]).fetchall()
        assert notes == [("acquire", 1), ("step_embeddings", 1)]
        assert con.execute("SELECT count(*) FROM frame_embeddings").fetchone()[0] == 72  # the views read again


def test_a_killed_run_is_marked_interrupted(tmp_path):
    workdir = Workdir.open(tmp_path / "work")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = RunRecord(run_id="20260101-000000-dead00", started_at=now(), model="m", model_trained=False, config={}, pid=int(gone.stdout))
    live = RunRecord(run_id="20260101-000000-live00", started_at=now(), model="m", model_trained=False, config={}, pid=os.getpid())
    write_run(workdir, dead)
    write_run(workdir, live)
    assert mark_interrupted(workdir) == [dead.run_id]
    states = {run.run_id: pq.read_table(workdir.run_record_path(run.run_id)).column("state")[0].as_py() for run in (dead, live)}
    assert states[dead.run_id] == "interrupted" and states[live.run_id] == "running"


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_gc_removes_only_what_no_run_references(demo_dataset, tmp_path):
    root = tmp_path / "work"
    first = run_pipeline(config_for(demo_dataset, root))
    second = run_pipeline(config_for(demo_dataset, root, fps=2.0))
    leftover = root / "store" / "frame_embeddings" / ".abc.parquet.0123.tmp"
    leftover.write_bytes(b"half a file")

    dry = invoke("gc", "--workdir", root, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 files" in dry.output  # both runs' stores are referenced; only the leftover goes
    assert leftover.exists()

    # Drop the first run: its 4-fps frames and their score caches are referenced by no run any more.
    old_frames = {p.name for p in (root / "store" / "frame_embeddings").glob("[!_.]*.parquet")}
    for path in sorted((root / "runs" / first.run_id).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "runs" / first.run_id).rmdir()
    dry = invoke("gc", "--workdir", root, "--dry-run")
    assert "would delete 13 files" in dry.output.replace("\n", " ")  # 6 frame files, 6 score caches, the leftover
    assert {p.name for p in (root / "store" / "frame_embeddings").glob("[!_.]*.parquet")} == old_frames  # a dry run deletes nothing

    done = invoke("gc", "--workdir", root)
    assert done.exit_code == 0, done.output
    assert not leftover.exists()
    assert len(list((root / "store" / "frame_embeddings").glob("[!_.]*.parquet"))) == 6
    again = run_pipeline(config_for(demo_dataset, root, fps=2.0))
    assert (again.encoded_frames, again.scored_pairs, again.encoded_texts) == (0, 0, 0)
    assert scores(root, again.run_id) == scores(root, second.run_id)
