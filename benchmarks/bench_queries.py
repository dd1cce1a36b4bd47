"""Query speed at 100 x ActionAtlas: the accuracy, per-domain and comparison queries, and a whole report.

Run ``.venv/bin/python -m benchmarks.bench_queries [--videos 93400] [--shard-size 16] [--keep DIR]``.
It writes a generated workdir in the real layout (runs/<run>/run.parquet,
videos.parquet, scores/<shard>.parquet with the real schemas) into a temporary
folder: 93,400 videos (56 domains, 82 % with 5 candidates and 18 % with 4, as
ActionAtlas's mix, random top-1 about 20.9 %), two scorers, about 840k score
rows, one score file per shard of ``--shard-size`` videos (the flow's default,
16, gives 5,838 files). Each query is timed cold (its first run) and warm (the
best of three), in seconds, through the same functions the report uses; the
bootstrap uses 1000 resamples.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from actalign.config import RunConfig
from actalign.queries import tables
from actalign.queries.runner import Session, refresh_views, run_sql, session
from actalign.storage import schemas
from actalign.storage.parquet import write_atomic
from actalign.storage.records import RunRecord, write_run
from actalign.storage.workdir import Workdir

RUN = "20260101-000000-bench0"
SCORERS = ("mean-pool", "actalign")
DOMAINS, CLASSES_PER_DOMAIN = 56, 40


def generate(root: Path, n_videos: int, shard_size: int, seed: int = 0) -> tuple[Workdir, int]:
    """Write the workdir; returns it and the number of score rows."""
    rng = np.random.default_rng(seed)
    workdir = Workdir.open(root)
    config = {"scorers": list(SCORERS), "fps": 4.0, "smoothing": 0, "provider": "file"}
    write_run(workdir, RunRecord(RUN, datetime.now(UTC), "generated", True, config, state="completed", n_videos=n_videos))

    ids = np.array([f"q{i:06d}" for i in range(n_videos)], dtype=object)
    domain_idx = rng.integers(0, DOMAINS, n_videos)
    n_cand = np.where(rng.random(n_videos) < 0.82, 5, 4)
    offsets = np.concatenate([[0], np.cumsum(n_cand)])
    # candidates: distinct classes of the video's domain (the first n of a random permutation's window)
    start = rng.integers(0, CLASSES_PER_DOMAIN, n_videos)
    position = np.arange(offsets[-1]) - np.repeat(offsets[:-1], n_cand)
    class_idx = (np.repeat(start, n_cand) + position * 7) % CLASSES_PER_DOMAIN
    candidate = np.char.add(np.char.add(np.repeat(domain_idx, n_cand).astype(str), "-"), class_idx.astype(str)).astype(object)
    label_pos = rng.integers(0, n_cand)
    label = candidate[offsets[:-1] + label_pos]
    videos = pa.table(
        {
            "run_id": pa.array([RUN] * n_videos),
            "video_id": pa.array(ids),
            "source": pa.array(np.char.add("https://youtu.be/", ids.astype(str)).astype(object)),
            "start_s": pa.array(np.zeros(n_videos)),
            "end_s": pa.array(np.full(n_videos, 5.0)),
            "domain": pa.array(np.char.add("sport-", domain_idx.astype(str)).astype(object)),
            "candidates": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(candidate)),
            "label": pa.array(label),
        }
    ).cast(schemas.VIDEOS)
    write_atomic(videos, workdir.videos_path(RUN))

    video_of_row = np.repeat(np.arange(n_videos), n_cand)
    is_label = position == np.repeat(label_pos, n_cand)
    rows = 0
    for shard_no, first in enumerate(range(0, n_videos, shard_size)):
        last = min(first + shard_size, n_videos)
        lo, hi = offsets[first], offsets[last]
        parts = []
        for scorer in SCORERS:
            score = rng.normal(size=hi - lo)
            if scorer == "actalign":
                score = np.round(score * 0.05 + 0.5 + 0.02 * is_label[lo:hi] * (rng.random(hi - lo) < 0.5), 4)
            else:
                score = np.round(score * 0.02 + 0.1, 4)  # rounded: some ties
            parts.append(
                {
                    "run_id": pa.array([RUN] * (hi - lo)),
                    "video_id": pa.array(ids[video_of_row[lo:hi]]),
                    "candidate": pa.array(candidate[lo:hi]),
                    "scorer": pa.array([scorer] * (hi - lo)),
                    "score": pa.array(score),
                    "path_len": pa.array(np.full(hi - lo, 30, dtype=np.int32)) if scorer == "actalign" else pa.nulls(hi - lo, pa.int32()),
                    "frames_key": pa.nulls(hi - lo, pa.string()),
                    "embed_key": pa.nulls(hi - lo, pa.string()),
                }
            )
        table = pa.concat_tables([pa.table(part).cast(schemas.SCORES) for part in parts])
        write_atomic(table, workdir.scores_path(RUN, f"{shard_no:05d}"))
        rows += table.num_rows
    return workdir, rows


def timed(work: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """(cold: the first run, warm: the best of the next ``repeats``) in seconds."""
    started = time.perf_counter()
    work()
    cold = time.perf_counter() - started
    warm = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        warm = min(warm, time.perf_counter() - started)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=93_400, help="videos (100 x ActionAtlas's 934)")
    parser.add_argument("--shard-size", type=int, help="videos per score file (default: the flow's, with 2 workers)")
    parser.add_argument("--keep", type=Path, help="write the workdir here and keep it (default: a temporary folder, removed)")
    args = parser.parse_args()
    args.shard_size = args.shard_size or RunConfig(videos="videos.csv", classes="classes.yaml").videos_per_shard(args.videos)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-queries-"))
    try:
        started = time.perf_counter()
        workdir, rows = generate(root / "work", args.videos, args.shard_size)
        files = len(list((root / "work" / "runs" / RUN / "scores").glob("*.parquet")))
        print(f"generated {args.videos} videos, {rows} score rows ({len(SCORERS)} scorers) in {files} score files: {time.perf_counter() - started:.1f} s")
        check = run_sql(workdir, "SELECT scorer, n, round(100 * top1, 2), round(100 * random_top1, 2) FROM accuracy ORDER BY scorer").rows
        print(f"accuracy: {check}")

        def report() -> None:
            from actalign.queries.report.build import build_report
            from actalign.queries.report.write import write_files

            write_files(build_report(workdir, RUN, worst=0, out_dir=root / "report"), ("md", "html", "json"))

        def focused(work: Callable[[Session], object]) -> Callable[[], object]:
            def run() -> None:
                with session(workdir) as s:
                    s.focus([RUN])
                    work(s)
            return run

        pairs = [(RUN, s) for s in SCORERS]
        cases: list[tuple[str, Callable[[], object]]] = [
            ("refresh the views in actalign.duckdb (writing commands)", lambda: refresh_views(workdir)),
            ("SELECT 1 (a session: the views created in memory)", lambda: run_sql(workdir, "SELECT 1")),
            ("predictions view (count)", lambda: run_sql(workdir, "SELECT count(*) FROM predictions")),
            ("accuracy view", lambda: run_sql(workdir, "SELECT * FROM accuracy")),
            ("accuracy_by_domain view", lambda: run_sql(workdir, "SELECT * FROM accuracy_by_domain")),
            ("accuracy + bootstrap CIs (tables.accuracy_rows)", lambda: tables.accuracy_rows(workdir, [RUN])),
            ("by domain + bootstrap CIs", lambda: tables.accuracy_rows(workdir, [RUN], by_domain=True)),
            ("comparison + paired bootstrap (tables.comparison_rows)", lambda: tables.comparison_rows(workdir, pairs, (RUN, "mean-pool"))),
            ("left_out reasons", lambda: tables.left_out_reasons(workdir, RUN)),
            ("disagreements (all rows)", lambda: tables.disagreements(workdir, RUN, "mean-pool", "actalign")),
            ("one session: focus (predictions computed once)", focused(lambda s: None)),
            ("one session: focus + accuracy + by domain + comparison", focused(lambda s: (
                tables.accuracy_rows(s, [RUN]), tables.accuracy_rows(s, [RUN], by_domain=True), tables.comparison_rows(s, pairs, (RUN, "mean-pool"))))),
            ("whole report: md + html + json, figures, no heatmaps", report),
        ]
        print(f"\n{'query':<56} {'cold s':>8} {'warm s':>8}")
        results = {}
        for name, work in cases:
            cold, warm = timed(work, repeats=1 if name.startswith("whole") else 3)
            results[name] = {"cold_s": round(cold, 3), "warm_s": round(warm, 3)}
            print(f"{name:<56} {cold:>8.3f} {warm:>8.3f}")
        print("\n" + json.dumps({"videos": args.videos, "score_rows": rows, "score_files": files, "seconds": results}))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
