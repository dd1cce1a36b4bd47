"""Only stale work: each change recomputes exactly the stages and items it affects, and the plan
(what `actalign status` shows) predicted exactly what the run then did.

One workdir goes through a sequence of edits; every run's counters are checked
against the expected numbers and against the plan the run wrote before work.
The tiny model is untrained: these tests count work, never judge accuracy.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from actalign import stages
from actalign.config import RunConfig
from actalign.flows.pipeline import RunSummary, run_pipeline
from actalign.inputs import read_inputs
from actalign.queries.runner import run_sql
from actalign.registry import identity_for
from actalign.storage.freshness import STALE, plan_run
from actalign.storage.workdir import Workdir
from actalign.tasks.acquire import source_fingerprint
from actalign.tiny_model import tiny_random_path

pytestmark = pytest.mark.usefixtures("prefect_harness")

VIDEOS, CLASSES, FRAMES = 6, 6, 12  # the demo set: 6 videos of 3 s at 4 fps, every class a candidate


def write_manifest(source: Path, dest: Path, rows: int | None = None, copies: int = 1, edit: dict | None = None, limit: int | None = None) -> Path:
    """The demo manifest with absolute paths: its first ``rows`` rows, each ``copies`` times under new ids
    (the first ``limit`` of those)."""
    original = list(csv.DictReader(open(source)))[:rows]
    out = []
    for copy in range(copies):
        for row in original:
            row = {**row, "path": str(source.parent / row["path"])}
            if copies > 1:
                row["video_id"] = f"{row['video_id']}-{copy:04d}"
            out.append({**row, **(edit or {}).get(row["video_id"], {})})
    out = out[:limit]
    with open(dest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)
    return dest


def planned(workdir: Path, run_id: str) -> dict[str, tuple[int, list[str]]]:
    """stage -> (stale items, distinct reasons) of the plan the run wrote before any work."""
    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT stage, count(*) FILTER (state = 'stale'), list(DISTINCT reason ORDER BY reason) FILTER (state = 'stale') "
            "FROM freshness WHERE run_id = ? GROUP BY stage",
            [run_id],
        ).fetchall()
    return {stage: (n, reasons or []) for stage, n, reasons in rows}


def work(summary: RunSummary) -> dict[str, int]:
    """What the run computed, from its own counters."""
    return {
        "videos": summary.n_videos - summary.reused_videos - summary.n_failed,
        "frames": summary.encoded_frames,
        "scripts": summary.scripts_generated,
        "texts": summary.encoded_texts,
        "pairs": summary.scored_pairs,
        "reused_pairs": summary.reused_pairs,
    }


def check_plan_matches(workdir: Path, summary: RunSummary) -> dict[str, tuple[int, list[str]]]:
    plan = planned(workdir, summary.run_id)
    assert plan["acquire"][0] == summary.n_videos - summary.reused_videos
    assert plan["score"][0] == summary.scored_pairs
    return plan


@pytest.fixture(scope="module")
def inputs(demo_dataset, tmp_path_factory) -> dict[str, Path]:
    manifest, classes = demo_dataset
    folder = tmp_path_factory.mktemp("manifests")
    return {
        "first4": write_manifest(manifest, folder / "first4.csv", rows=4),
        "all6": write_manifest(manifest, folder / "all6.csv"),
        "cut": write_manifest(manifest, folder / "cut.csv", edit={"demo-002": {"end_s": "2.0"}}),
        "classes": classes,
    }


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_each_change_recomputes_exactly_what_it_affects(inputs, tmp_path):
    workdir = tmp_path / "work"

    def run(manifest: str = "all6", **overrides) -> tuple[dict[str, int], dict[str, tuple[int, list[str]]]]:
        settings = {"model": "tiny-random", "shard_size": 3, **overrides}
        config = RunConfig(videos=inputs[manifest], classes=inputs["classes"], workdir=workdir, **settings)
        summary = run_pipeline(config)
        assert summary.state == "completed", summary
        return work(summary), check_plan_matches(workdir, summary)

    pairs_per_video = CLASSES * 2  # mean-pool and actalign

    done, plan = run("first4")
    assert done == {"videos": 4, "frames": 4 * FRAMES, "scripts": CLASSES, "texts": done["texts"], "pairs": 4 * pairs_per_video, "reused_pairs": 0}
    assert plan["acquire"] == (4, ["never computed"])

    # The manifest grows by two videos: only they are decoded and scored.
    done, plan = run("all6")
    assert done == {"videos": 2, "frames": 2 * FRAMES, "scripts": 0, "texts": 0, "pairs": 2 * pairs_per_video, "reused_pairs": 4 * pairs_per_video}
    assert plan["acquire"] == (2, ["new video"]) and plan["score"] == (2 * pairs_per_video, ["new video"])

    # Nothing changed: nothing computed.
    done, plan = run("all6")
    assert done == {"videos": 0, "frames": 0, "scripts": 0, "texts": 0, "pairs": 0, "reused_pairs": VIDEOS * pairs_per_video}
    assert all(n == 0 for n, _ in plan.values())

    # fps: every video again, every pair again; scripts and texts untouched.
    done, plan = run("all6", fps=2.0)
    assert done == {"videos": VIDEOS, "frames": VIDEOS * FRAMES // 2, "scripts": 0, "texts": 0, "pairs": VIDEOS * pairs_per_video, "reused_pairs": 0}
    assert plan["acquire"] == (VIDEOS, ["fps 4.0 -> 2.0"]) and plan["score"] == (VIDEOS * pairs_per_video, ["frames changed (acquire)"])
    assert plan["scripts"][0] == plan["step_embeddings"][0] == 0

    # Back to 4 fps: all from the store (nothing was overwritten).
    assert run("all6")[0]["pairs"] == 0
    # Both samplings stay in the store: the view tells them apart, and its comment's query picks one run's frames.
    store = Workdir.open(workdir)
    assert dict(run_sql(store, "SELECT fps, count(*) FROM frame_embeddings WHERE video_id = 'demo-000' GROUP BY fps").rows) == {4.0: FRAMES, 2.0: FRAMES // 2}
    last_run = run_sql(store, "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").rows[0][0]
    one_run = run_sql(store, """SELECT DISTINCT f.fps, count(*) OVER () FROM frame_embeddings f JOIN (SELECT item AS video_id, key AS frames_key
                                FROM freshness WHERE run_id = ? AND stage = 'acquire') USING (video_id, frames_key)""", [last_run]).rows
    assert one_run == [(4.0, VIDEOS * FRAMES)]

    # Smoothing: only the alignment scorer's pairs; mean-pool does not smooth.
    done, plan = run("all6", smoothing=3)
    assert done == {"videos": 0, "frames": 0, "scripts": 0, "texts": 0, "pairs": VIDEOS * CLASSES, "reused_pairs": VIDEOS * CLASSES}
    assert plan["score"] == (VIDEOS * CLASSES, ["smoothing 0 -> 3"])

    # A scorer added: only its pairs.
    done, plan = run("all6", smoothing=3, scorers=("mean-pool", "actalign", "max-pool"))
    assert done == {"videos": 0, "frames": 0, "scripts": 0, "texts": 0, "pairs": VIDEOS * CLASSES, "reused_pairs": VIDEOS * pairs_per_video}
    assert plan["score"] == (VIDEOS * CLASSES, ["scorer max-pool added"])

    # One video's segment edited in the manifest: that video only.
    done, plan = run("cut", smoothing=3)
    assert done == {"videos": 1, "frames": 8, "scripts": 0, "texts": 0, "pairs": pairs_per_video, "reused_pairs": (VIDEOS - 1) * pairs_per_video}
    assert plan["acquire"] == (1, ["video file or segment changed"])

    # Another checkpoint (a copy of the tiny model with its own fingerprint): frames, texts and pairs again;
    # the scripts do not depend on the model.
    other = tmp_path / "other-model"
    shutil.copytree(tiny_random_path(), other)
    (other / "config.json").write_text((other / "config.json").read_text().replace("{", '{"_copy": 1,', 1))
    done, plan = run("all6", model=str(other))
    assert done["videos"] == VIDEOS and done["scripts"] == 0 and done["pairs"] == VIDEOS * pairs_per_video
    assert plan["step_embeddings"][0] == CLASSES and plan["scripts"][0] == 0
    assert any("fingerprint" in reason for reason in plan["acquire"][1])


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_status_plans_without_running(inputs, tmp_path, monkeypatch):
    """The plan `actalign status` prints is made without writing any store file."""
    tiny_random_path()  # built, not loaded: status reads its identity from its files
    workdir = tmp_path / "work"
    config = RunConfig(videos=inputs["all6"], classes=inputs["classes"], workdir=workdir, model="tiny-random", shard_size=3)
    store = Workdir.open(workdir)

    def plan():
        return plan_run(store, config, read_inputs(config), identity_for(config), lambda video: source_fingerprint(video, config))

    before = plan()
    assert {stage: len(before.stale(stage)) for stage in ("acquire", "scripts", "step_embeddings", "score")} == {
        "acquire": VIDEOS, "scripts": CLASSES, "step_embeddings": CLASSES, "score": VIDEOS * CLASSES * 2,
    }
    assert not [p for p in (workdir / "store").rglob("*.parquet") if p.stem != ".schema"]
    summary = run_pipeline(config)
    after = plan()
    assert summary.state == "completed" and all(item.state != STALE for item in after.items)

    # A stage version bumped in the code (its logic changed): that stage's items are stale, and say why.
    version = stages.SCORE.version
    monkeypatch.setattr(stages, "SCORE", replace(stages.SCORE, version=version + 1))
    bumped = plan()
    assert {stage: len(bumped.stale(stage)) for stage in ("acquire", "scripts", "step_embeddings", "score")} == {
        "acquire": 0, "scripts": 0, "step_embeddings": 0, "score": VIDEOS * CLASSES * 2,
    }
    assert bumped.reasons("score") == {f"version {version} -> {version + 1}": VIDEOS * CLASSES * 2}


@pytest.mark.slow
def test_ten_videos_added_to_a_thousand_process_ten(demo_dataset, tmp_path):
    """1000 manifest rows (the demo clips under 1000 ids), then 10 more: the second run decodes and scores 10."""
    manifest, classes = demo_dataset
    workdir = tmp_path / "work"

    def run(n: int) -> RunSummary:
        rows = write_manifest(manifest, tmp_path / f"m{n}.csv", copies=1010 // VIDEOS + 1, limit=n)
        summary = run_pipeline(RunConfig(videos=rows, classes=classes, workdir=workdir, model="tiny-random", shard_size=100))
        assert summary.state == "completed" and summary.n_videos == n
        return summary

    run(1000)
    added = run(1010)
    assert work(added) == {"videos": 10, "frames": 10 * FRAMES, "scripts": 0, "texts": 0, "pairs": 10 * CLASSES * 2, "reused_pairs": 1000 * CLASSES * 2}
    assert added.reused_videos == 1000
    assert planned(workdir, added.run_id)["acquire"] == (10, ["new video"])
