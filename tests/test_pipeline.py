"""The whole pipeline under a real Prefect server, on generated videos, with the tiny model.

The tiny model is untrained, so these tests check plumbing and bookkeeping
(rows, keys, reuse, failure rows), never accuracy.
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from actalign import models
from actalign.config import RunConfig
from actalign.flows.pipeline import RunSummary, run_pipeline
from actalign.frames import DECODE_STATS
from actalign.ids import file_stem
from actalign.scorers import SCORER_NAMES
from actalign.storage.workdir import Workdir

pytestmark = pytest.mark.usefixtures("prefect_harness")


def config_for(manifest: Path, classes: Path, workdir: Path, **overrides) -> RunConfig:
    return RunConfig(videos=manifest, classes=classes, workdir=workdir, model="tiny-random", shard_size=4, **overrides)


def query(workdir: Path, sql: str, *params) -> list[tuple]:
    """Through the database file, as any DuckDB client would see it."""
    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture(scope="module")
def first_run(demo_dataset, tmp_path_factory) -> tuple[RunConfig, RunSummary]:
    manifest, classes = demo_dataset
    config = config_for(manifest, classes, tmp_path_factory.mktemp("work"))
    return config, run_pipeline(config)


def test_end_to_end_tables(first_run):
    config, summary = first_run
    root = Path(summary.workdir)
    assert summary.state == "completed" and summary.n_failed == 0 and summary.n_videos == 6
    assert not summary.trained
    run = summary.run_id
    assert query(root, "SELECT count(*) FROM videos WHERE run_id = ?", run) == [(6,)]
    # 3-second demo videos at 4 fps: 12 sampled frames each.
    assert query(root, "SELECT count(*), count(DISTINCT video_id) FROM frame_embeddings") == [(72, 6)]
    assert query(root, "SELECT count(*) FROM scripts") == [(18,)]  # 6 classes x 3 steps
    assert query(root, "SELECT count(*) FROM step_embeddings WHERE kind = 'step'") == [(18,)]
    # every video x all 6 candidates x 2 scorers
    assert query(root, "SELECT count(*) FROM scores WHERE run_id = ?", run) == [(72,)]
    assert query(root, "SELECT scorer, count(*), count(DISTINCT video_id) FROM predictions WHERE run_id = ? GROUP BY 1 ORDER BY 1", run) == [
        ("actalign", 6, 6),
        ("mean-pool", 6, 6),
    ]
    assert query(root, "SELECT DISTINCT state FROM status WHERE run_id = ?", run) == [("ok",)]
    assert query(root, "SELECT state, model_trained, n_videos FROM runs WHERE run_id = ?", run) == [("completed", False, 6)]


def test_accuracy_agrees_with_the_scores(first_run):
    """Top-k computed here from the raw score rows (ties against the label) equals the accuracy view."""
    _, summary = first_run
    root, run = Path(summary.workdir), summary.run_id
    labels = dict(query(root, "SELECT video_id, label FROM videos WHERE run_id = ?", run))
    rows = query(root, "SELECT scorer, video_id, candidate, score FROM scores WHERE run_id = ?", run)
    for scorer in ("actalign", "mean-pool"):
        ranks = []
        for video, label in labels.items():
            scores = {c: s for sc, v, c, s in rows if sc == scorer and v == video}
            ranks.append(sum(1 for c, s in scores.items() if c != label and s >= scores[label]) + 1)
        expected = [sum(r <= k for r in ranks) / len(ranks) for k in (1, 2, 3)]
        (n, top1, top2, top3, lo, hi), = query(
            root, "SELECT n, top1, top2, top3, top1_lo, top1_hi FROM accuracy WHERE run_id = ? AND scorer = ?", run, scorer
        )
        assert n == 6 and [top1, top2, top3] == pytest.approx(expected)
        assert 0.0 <= lo <= top1 <= hi <= 1.0


def test_report_carries_the_untrained_banner(first_run):
    _, summary = first_run
    report = Path(summary.report).read_text()
    assert "UNTRAINED MODEL" in report and "## Accuracy" in report and "actalign" in report


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_rerun_decodes_and_encodes_nothing(first_run):
    config, summary = first_run
    frame_files = sorted(Path(summary.workdir, "store", "frame_embeddings").glob("*.parquet"))
    mtimes = [f.stat().st_mtime_ns for f in frame_files]
    DECODE_STATS.reset()
    models.clear_encoder_cache()
    again = run_pipeline(config)
    assert not models._ENCODERS  # the flow plans with the model's identity; with nothing to encode no task loads the weights
    assert DECODE_STATS.frames == 0 and DECODE_STATS.videos == 0
    assert (again.decoded_frames, again.encoded_frames, again.encoded_texts, again.scored_pairs) == (0, 0, 0, 0)
    assert again.reused_pairs == summary.scored_pairs == 6 * 6 * 2
    more = run_pipeline(config.model_copy(update={"scorers": ("mean-pool", "actalign", "actalign-segment")}))
    assert (more.scored_pairs, more.reused_pairs, more.decoded_frames) == (6 * 6, 6 * 6 * 2, 0)  # only the new scorer's pairs
    assert again.reused_videos == 6 and again.run_id != summary.run_id
    assert [f.stat().st_mtime_ns for f in frame_files] == mtimes
    root = Path(summary.workdir)
    same = "SELECT video_id, candidate, scorer, score FROM scores WHERE run_id = ? ORDER BY ALL"
    assert query(root, same, again.run_id) == query(root, same, summary.run_id)
    for stage in ("acquire", "score"):  # one word for reuse in every stage
        assert query(root, f"SELECT count(*) FROM status WHERE run_id = ? AND stage = '{stage}' AND state = 'skipped'", again.run_id) == [(6,)]


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_bad_videos_fail_alone(demo_dataset, tmp_path):
    """A missing file, an undecodable file and a segment past the end each become a failed row; the rest is scored."""
    manifest, classes = demo_dataset
    rows = list(csv.DictReader(open(manifest)))
    base = manifest.parent
    (tmp_path / "notes.mp4").write_text("this is not a video")
    rows[0]["path"] = str(base / "videos" / "gone.mp4")
    rows[1]["path"] = str(tmp_path / "notes.mp4")
    rows[2]["start_s"], rows[2]["end_s"] = "100", "104"
    for row in rows:
        row["path"] = str((base / row["path"]).resolve())
    bad_manifest = tmp_path / "manifest.csv"
    with open(bad_manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    summary = run_pipeline(config_for(bad_manifest, classes, tmp_path / "work", scorers=SCORER_NAMES))
    assert summary.state == "completed_with_failures" and summary.n_failed == 3
    root, run = tmp_path / "work", summary.run_id
    failed = query(root, "SELECT item, error_class, message FROM status WHERE run_id = ? AND state = 'failed' ORDER BY item", run)
    assert [(item, cls) for item, cls, _ in failed] == [
        (rows[0]["video_id"], "VideoNotFoundError"),
        (rows[1]["video_id"], "VideoDecodeError"),
        (rows[2]["video_id"], "SegmentOutOfRangeError"),
    ]
    assert "gone.mp4" in failed[0][2] and "notes.mp4" in failed[1][2]
    assert query(root, "SELECT count(DISTINCT video_id), count(DISTINCT scorer), count(*) FROM scores WHERE run_id = ?", run) == [(3, len(SCORER_NAMES), 3 * 6 * len(SCORER_NAMES))]
    assert query(root, "SELECT n, n_missing FROM accuracy WHERE run_id = ? AND scorer = 'actalign'", run) == [(3, 3)]
    assert query(root, "SELECT state, n_failed FROM runs WHERE run_id = ?", run) == [("completed_with_failures", 3)]


def test_views_open_from_any_client_and_any_directory(first_run, tmp_path, monkeypatch):
    _, summary = first_run
    copy = tmp_path / "elsewhere.duckdb"
    shutil.copy(Path(summary.workdir) / "actalign.duckdb", copy)
    monkeypatch.chdir(tmp_path)
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] >= 12


def test_views_answer_on_an_empty_workdir(tmp_path):
    from actalign.queries.runner import run_sql

    workdir = Workdir.open(tmp_path / "empty")
    for view in ("videos", "frame_embeddings", "scripts", "step_embeddings", "scores", "predictions", "accuracy", "accuracy_by_domain", "status", "runs"):
        assert run_sql(workdir, f"SELECT * FROM {view}").rows == []


def test_explain_draws_every_candidate(first_run, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from actalign.cli.main import app

    _, summary = first_run
    result = CliRunner().invoke(app, ["explain", "--video", "demo-002", "--workdir", summary.workdir, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    pngs = sorted(tmp_path.glob("*.png"))
    candidates = query(Path(summary.workdir), "SELECT candidates FROM videos WHERE run_id = ? AND video_id = 'demo-002'", summary.run_id)[0][0]
    assert sorted(p.stem for p in pngs) == sorted(map(file_stem, candidates)) and len(pngs) == 6
    assert all(Image.open(p).size[0] >= 8 * 150 - 2 for p in pngs)  # 150 dpi by default
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in pngs)
    missing = CliRunner().invoke(app, ["explain", "--video", "nope", "--workdir", summary.workdir])
    assert missing.exit_code == 2 and "nope" in missing.output
    assert f"actalign sql --workdir {summary.workdir} " in " ".join(missing.output.split())


@pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<svg"), ("pdf", b"%PDF-")])
def test_explain_writes_papers_formats(first_run, tmp_path, fmt, magic):
    from typer.testing import CliRunner

    from actalign.cli.main import app

    _, summary = first_run
    result = CliRunner().invoke(app, ["explain", "--video", "demo-002", "--workdir", summary.workdir, "--out", str(tmp_path), "--format", fmt])
    assert result.exit_code == 0, result.output
    figures = sorted(tmp_path.iterdir())
    assert len(figures) == 6 and all(p.suffix == f".{fmt}" and magic in p.read_bytes()[:4096] for p in figures)
    printed = "".join(result.output.split())  # the paths, however the terminal wrapped them
    assert all(str(p) in printed for p in figures)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_explain_dpi_sets_the_png_size(first_run, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from actalign.cli.main import app

    _, summary = first_run
    sizes = {}
    for dpi in (150, 300):
        out = tmp_path / str(dpi)
        result = CliRunner().invoke(app, ["explain", "--video", "demo-002", "--workdir", summary.workdir, "--out", str(out), "--dpi", str(dpi)])
        assert result.exit_code == 0, result.output
        sizes[dpi] = Image.open(sorted(out.glob("*.png"))[0]).size
    assert abs(sizes[300][0] - 2 * sizes[150][0]) <= 3


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_shards_the_plan_finds_done_share_one_task_run_per_stage(demo_dataset, tmp_path):
    """Every shard is its own task run when it has work; a re-run's done shards take one task run per stage
    (a task run costs more than a done shard's checks), and a changed video's shard is again its own."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    manifest, classes = demo_dataset
    config = config_for(manifest, classes, tmp_path / "work").model_copy(update={"shard_size": 2})  # 3 shards of 2 videos
    rows = list(csv.DictReader(open(manifest)))
    rows[0].update(path=str(manifest.parent / rows[0]["path"]), end_s="2.0")  # one video's segment changes
    changed = tmp_path / "changed.csv"
    with open(changed, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([rows[0], *({**r, "path": str(manifest.parent / r["path"])} for r in rows[1:])])
    names = {f"{tmp_path.name}-{n}": c for n, c in (("cold", config), ("again", config), ("changed", config.model_copy(update={"videos": changed})))}
    summaries = {name: run_pipeline(c, run_name=name) for name, c in names.items()}
    expected = {
        "cold": {"acquire-shard": 3, "score-shard": 3},
        "again": {"acquire-settled-shards": 1, "score-settled-shards": 1},
        "changed": {"acquire-shard": 1, "acquire-settled-shards": 1, "score-shard": 1, "score-settled-shards": 1},
    }
    seen: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + 120  # task runs reach the server as events, shortly after the flow run ends
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            for name in names:
                flow_runs = FlowRunFilter(name=FlowRunFilterName(any_=[name]))
                runs = [r.name.rsplit("-", 1)[0] for r in client.read_task_runs(flow_run_filter=flow_runs)]
                seen[name.rsplit("-", 1)[1]] = {task: runs.count(task) for task in set(runs) if "shard" in task}
        if seen == expected:
            break
        time.sleep(1)
    assert seen == expected
    again, after_change = summaries[f"{tmp_path.name}-again"], summaries[f"{tmp_path.name}-changed"]
    assert (again.reused_videos, again.scored_pairs) == (6, 0)
    assert (after_change.reused_videos, after_change.decoded_frames > 0, after_change.n_failed) == (5, True, 0)
    root = Path(again.workdir)
    for stage in ("acquire", "score"):  # the shared task run still writes each shard's status, per video
        assert query(root, f"SELECT count(*) FROM status WHERE run_id = ? AND stage = '{stage}' AND state = 'skipped'", again.run_id) == [(6,)]
    assert query(root, "SELECT count(DISTINCT video_id) FROM scores WHERE run_id = ?", again.run_id) == [(6,)]
