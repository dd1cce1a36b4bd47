"""ActionAtlas through the whole pipeline: rows in the benchmark's real schema whose videos are served
by a loopback HTTP server in place of YouTube, downloaded by the real yt-dlp, decoded, obfuscated and
scored. Checks every download outcome in the status view, and what a re-run fetches again."""

from __future__ import annotations

import csv
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from http_fixtures import Behaviour, LoopbackServer

from actalign.config import RunConfig
from actalign.flows.pipeline import run_pipeline

pytestmark = pytest.mark.usefixtures("prefect_harness")


def benchmark_rows(demo_dataset, server: LoopbackServer) -> list[dict]:
    """One question per demo video (choices: four demo classes), plus a removed and a flaky video."""
    manifest, classes = demo_dataset
    actions = {c["id"]: c["action"] for c in yaml.safe_load(classes.read_text())["classes"]}
    videos = list(csv.DictReader(open(manifest)))
    rows = []
    for number, video in enumerate(videos):
        others = [a for cid, a in actions.items() if cid != video["label"]][number % 3 : number % 3 + 3]
        choices = [*others[:number % 4], actions[video["label"]], *others[number % 4 :]][:4]
        behaviour = Behaviour(statuses=(404,) * 50) if number == 0 else Behaviour(statuses=(500, 500)) if number == 1 else Behaviour()
        url = server.add(f"/watch/{video['video_id']}.mp4", manifest.parent / video["path"], behaviour)
        blur = {"1": [{"description": "SCORE", "bounding_poly": {"vertices": [[0, 0], [64, 0], [64, 32], [0, 32]]}}]}
        rows.append(
            {
                "id": f"q-{number:03d}",
                "youtube_id": url,
                "start_timestamp": "0.5",
                "end_timestamp": 2.5,
                "domain": "shapes",
                "action": actions[video["label"]],
                "question": "Which order do the shapes appear in?",
                "choices_str": "\n".join(f"{i}. {choice}" for i, choice in enumerate(choices, start=1)),
                "answer": choices.index(actions[video["label"]]) + 1,
                "choice_descriptions": [""] * len(choices),
                "frames_to_blur": json.dumps(blur) if number == 2 else "{}",
            }
        )
    return rows


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_actionatlas_rows_download_score_and_resume(demo_dataset, tmp_path):
    _, classes = demo_dataset
    with LoopbackServer() as server:
        fixture = tmp_path / "actionatlas.parquet"
        pq.write_table(pa.Table.from_pylist(benchmark_rows(demo_dataset, server)), fixture)
        settings = dict(
            benchmark="actionatlas", videos=fixture, classes=classes, workdir=tmp_path / "work", model="tiny-random",
            shard_size=4, download=dict(backoff_s=0.01, max_attempts=3),
        )
        first = run_pipeline(RunConfig(**settings))
        requests_after_first = server.total_requests()
        gone_requests = server.requests("/watch/demo-000.mp4")
        again = run_pipeline(RunConfig(**settings))
        requests_after_again = server.total_requests()
        retried = run_pipeline(RunConfig(**{**settings, "download": {**settings["download"], "retry_failed": True}}))
        gone_after_retry = server.requests("/watch/demo-000.mp4")

    assert first.state == "completed_with_failures" and first.n_failed == 1 and first.downloaded_videos == 5
    with duckdb.connect(str(tmp_path / "work" / "actalign.duckdb"), read_only=True) as con:
        status = dict(
            (item, (state, error, attempts))
            for item, state, error, attempts in con.execute(
                "SELECT item, state, error_class, attempts FROM status WHERE run_id = ? AND stage = 'acquire'", [first.run_id]
            ).fetchall()
        )
        assert status["q-000"] == ("failed", "PermanentDownloadError", 1)  # 404: not retried
        assert status["q-001"] == ("ok", None, 3)  # 500, 500, then the download
        assert all(status[f"q-{n:03d}"] == ("ok", None, 1) for n in range(2, 6))
        message = con.execute("SELECT message FROM status WHERE run_id = ? AND item = 'q-000'", [first.run_id]).fetchone()[0]
        assert "HTTP Error 404" in message
        # 2 s segments at 4 fps, and candidates and labels joined by question id and choice index
        assert con.execute("SELECT count(*) FROM scores WHERE run_id = ? AND scorer = 'actalign'", [first.run_id]).fetchone()[0] == 5 * 4
        assert con.execute("SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM frame_embeddings GROUP BY video_id)").fetchone() == (8, 8)
        assert con.execute("SELECT n, n_missing FROM accuracy WHERE run_id = ? AND scorer = 'actalign'", [first.run_id]).fetchone() == (5, 1)

    # A re-run fetches nothing: complete videos are reused, the permanent failure is remembered.
    assert requests_after_again == requests_after_first and again.downloaded_videos == 0 and again.reused_videos == 5
    assert again.n_failed == 1
    # --retry-failed asks the server again for the removed video only.
    assert gone_after_retry == gone_requests + 1 and retried.reused_videos == 5
