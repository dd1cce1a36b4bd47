"""The SQL surface and the bootstrap, against an independent NumPy computation on a generated workdir.

The workdir is written in the real layout (runs/<run>/run.parquet, videos.parquet, scores/*.parquet,
status/*.parquet) with the real schemas, so the views read exactly what a pipeline run writes. The
generated scores include ties (scores on a coarse grid), a video whose label has no score row, a
video missing another candidate's score, a single-candidate video, unlabelled videos and failures.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from actalign.queries import stats, tables
from actalign.queries.runner import NAMED_DIR, SQL_DIR, load_named_query, named_queries, named_query, run_sql
from actalign.storage import schemas
from actalign.storage.parquet import write_atomic
from actalign.storage.records import RunRecord, StatusRow, write_run, write_status
from actalign.storage.workdir import Workdir

RUN_A, RUN_B = "20260101-000000-aaaaaa", "20260102-000000-bbbbbb"
DOMAINS = ["diving", "fencing", "judo", None]
CLASSES = [f"c{i:02d}" for i in range(12)]
N_VIDEOS = 240


def generate(seed: int = 7) -> dict:
    """Videos and score rows of two runs, as plain Python: the ground truth for the checks."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(N_VIDEOS):
        n_cand = 1 if i == 0 else int(rng.choice([4, 5]))
        candidates = list(rng.choice(CLASSES, size=n_cand, replace=False))
        label = None if i % 40 == 39 else candidates[int(rng.integers(n_cand))]
        videos.append({"video_id": f"v{i:03d}", "domain": DOMAINS[i % len(DOMAINS)], "candidates": candidates, "label": label})
    failed = {"v010": ("acquire", "PermanentDownloadError"), "v011": ("acquire", "TransientDownloadError"), "v012": ("score", "MissingScriptError")}
    not_scored = {"v013"}  # labelled, no scores, no failure row
    scores = {RUN_A: [], RUN_B: []}
    for run, scorers in ((RUN_A, ("mean-pool", "actalign")), (RUN_B, ("actalign",))):
        for v in videos:
            if v["video_id"] in failed or v["video_id"] in not_scored or (run == RUN_B and v["video_id"] in ("v020", "v021")):
                continue
            for scorer in scorers:
                for c in v["candidates"]:
                    if run == RUN_A and scorer == "actalign" and v["video_id"] == "v030" and c == v["label"]:
                        continue  # the label's score row is missing: not counted as scored
                    if run == RUN_A and scorer == "actalign" and v["video_id"] == "v031" and c != v["label"] and c == [x for x in v["candidates"] if x != v["label"]][0]:
                        continue  # another candidate's row is missing: ranked among the rest
                    if scorer == "mean-pool":
                        score = float(rng.integers(0, 4)) / 4  # a coarse grid: many ties
                    else:
                        bonus = 0.6 if (c == v["label"] and rng.random() < 0.35 + 0.1 * (run == RUN_B)) else 0.0
                        score = round(float(rng.normal()) + bonus, 1)  # rounded: some ties
                    scores[run].append({"run_id": run, "video_id": v["video_id"], "candidate": c, "scorer": scorer, "score": score, "path_len": None})
    return {"videos": videos, "scores": scores, "failed": failed, "not_scored": not_scored}


def write_workdir(root, data: dict) -> Workdir:
    workdir = Workdir.open(root)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for offset, (run, scorers) in enumerate(((RUN_A, ["mean-pool", "actalign"]), (RUN_B, ["actalign"]))):
        config = {"scorers": scorers, "fps": 4.0, "smoothing": 0, "provider": "openai",
                  "llm": {"model": "gpt-test", "base_url": "http://user:hunter2@llm.local:8000/v1?key=s3cret"}}
        write_run(workdir, RunRecord(run, start + timedelta(days=offset), "fake-model", offset == 0, config, state="completed", n_videos=N_VIDEOS))
        rows = [{"run_id": run, "source": f"/videos/{v['video_id']}.mp4", "start_s": None, "end_s": None, **v} for v in data["videos"]]
        write_atomic(pa.Table.from_pylist(rows, schema=schemas.VIDEOS), workdir.videos_path(run))
        score_rows = data["scores"][run]
        half = len(score_rows) // 2  # two shards, as the flow writes them
        for shard, part in (("00000", score_rows[:half]), ("00001", score_rows[half:])):
            write_atomic(pa.Table.from_pylist(part, schema=schemas.SCORES), workdir.scores_path(run, shard))
        status = [StatusRow.failed(stage, video, RuntimeError(f"{cls} for {video}")) for video, (stage, cls) in data["failed"].items()]
        for row, (video, (_, cls)) in zip(status, data["failed"].items()):
            row.error_class = cls
        write_status(workdir, run, "mixed", "00000", status)
    return workdir


@pytest.fixture(scope="module")
def data() -> dict:
    return generate()


@pytest.fixture(scope="module")
def workdir(data, tmp_path_factory) -> Workdir:
    return write_workdir(tmp_path_factory.mktemp("queries") / "work", data)


# --------------------------------------------------------------------------- the independent computation


def expected_ranks(data: dict, run: str, scorer: str) -> dict[str, tuple[int, int, str | None]]:
    """video -> (rank of the label with ties against it, candidates scored, domain), for scored labelled videos."""
    by_video: dict[str, dict[str, float]] = {}
    for row in data["scores"][run]:
        if row["scorer"] == scorer:
            by_video.setdefault(row["video_id"], {})[row["candidate"]] = row["score"]
    out = {}
    for v in data["videos"]:
        scores = by_video.get(v["video_id"])
        if v["label"] is None or not scores or v["label"] not in scores:
            continue
        true = scores[v["label"]]
        others = np.array([s for c, s in scores.items() if c != v["label"]])
        out[v["video_id"]] = (1 + int((others >= true).sum()), len(scores), v["domain"] or "(none)")
    return out


def explicit_bootstrap(hits: np.ndarray, resamples: int = 4000, seed: int = 12345) -> np.ndarray:
    """Percentile interval by drawing video indices with replacement: hits is n x 3 (top-1/2/3)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hits), size=(resamples, len(hits)))
    means = hits[idx].mean(axis=1)
    return np.quantile(means, [0.025, 0.975], axis=0)


def wilson(p: float, n: int) -> tuple[float, float]:
    z = 1.96
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


# --------------------------------------------------------------------------- tests


def test_the_generated_cases_are_there(data):
    ranks = expected_ranks(data, RUN_A, "actalign")
    assert "v000" in ranks and ranks["v000"] == (1, 1, "diving")  # the single-candidate video
    assert "v030" not in ranks and "v031" in ranks  # label row missing: not scored; other row missing: scored
    mean_pool = expected_ranks(data, RUN_A, "mean-pool")
    assert sum(r for r, *_ in mean_pool.values()) > 0
    ties = sum(1 for row in data["scores"][RUN_A] if row["scorer"] == "mean-pool") - len({(r["video_id"], r["score"]) for r in data["scores"][RUN_A] if r["scorer"] == "mean-pool"})
    assert ties > 100  # plenty of tied scores


@pytest.mark.parametrize(("run", "scorer"), [(RUN_A, "mean-pool"), (RUN_A, "actalign"), (RUN_B, "actalign")])
def test_accuracy_matches_numpy(workdir, data, run, scorer):
    ranks = expected_ranks(data, run, scorer)
    r = np.array([v[0] for v in ranks.values()])
    m = np.array([v[1] for v in ranks.values()])
    n_labelled = sum(v["label"] is not None for v in data["videos"])
    (row,) = [x for x in tables.accuracy_rows(workdir, [run]) if x["scorer"] == scorer]
    assert (row["n_labelled"], row["n"], row["n_missing"]) == (n_labelled, len(r), n_labelled - len(r))
    hits = np.stack([(r <= k) for k in (1, 2, 3)], axis=1).astype(float)
    reference = explicit_bootstrap(hits)
    for i, k in enumerate((1, 2, 3)):
        assert row[f"top{k}"] == pytest.approx(hits[:, i].mean())
        assert row[f"random_top{k}"] == pytest.approx(np.mean(np.minimum(k, m) / m))
        assert (row[f"top{k}_lo"], row[f"top{k}_hi"]) == pytest.approx(wilson(hits[:, i].mean(), len(r)))
        lo, hi = row[f"top{k}_boot_lo"], row[f"top{k}_boot_hi"]
        assert lo <= row[f"top{k}"] <= hi
        # the same bootstrap distribution, drawn another way: equal up to Monte Carlo error
        assert lo == pytest.approx(reference[0, i], abs=0.015) and hi == pytest.approx(reference[1, i], abs=0.015)


def test_accuracy_by_domain_matches_numpy(workdir, data):
    ranks = expected_ranks(data, RUN_A, "mean-pool")
    rows = {x["domain"]: x for x in tables.accuracy_rows(workdir, [RUN_A], by_domain=True) if x["scorer"] == "mean-pool"}
    assert set(rows) == {"diving", "fencing", "judo", "(none)"}
    for domain, row in rows.items():
        r = np.array([rank for rank, _, d in ranks.values() if d == domain])
        labelled = sum(1 for v in data["videos"] if v["label"] is not None and (v["domain"] or "(none)") == domain)
        assert (row["n"], row["n_labelled"], row["n_missing"]) == (len(r), labelled, labelled - len(r))
        for k in (1, 2, 3):
            assert row[f"top{k}"] == pytest.approx((r <= k).mean())
        assert row["top1_boot_lo"] <= row["top1"] <= row["top1_boot_hi"]


def test_a_run_with_the_same_outcomes_reports_the_same_intervals(data, tmp_path):
    """An unchanged re-run (a new run id, the same scores) shows the intervals of the run before it, per domain too."""
    same = {**data, "scores": {RUN_A: data["scores"][RUN_A], RUN_B: [{**row, "run_id": RUN_B} for row in data["scores"][RUN_A]]}}
    workdir = write_workdir(tmp_path / "work", same)
    for by_domain in (False, True):
        rows = tables.accuracy_rows(workdir, [RUN_A, RUN_B], by_domain=by_domain)
        by_run = {run: {(r["scorer"], r.get("domain")): {k: v for k, v in r.items() if k != "run_id"} for r in rows if r["run_id"] == run} for run in (RUN_A, RUN_B)}
        assert by_run[RUN_A] and by_run[RUN_A] == by_run[RUN_B]


def test_ties_are_not_wins(workdir):
    tied = run_sql(
        workdir,
        """SELECT p.video_id, p.true_rank, p.margin, p.predicted = p.label FROM predictions p
           WHERE p.run_id = ? AND p.scorer = 'mean-pool' AND p.margin = 0""",
        [RUN_A],
    ).rows
    assert tied and all(rank >= 2 for _, rank, _, _ in tied)
    # margin > 0 exactly when the label is ranked first
    assert run_sql(workdir, "SELECT count(*) FROM predictions WHERE (margin > 0) <> (true_rank = 1)").rows == [(0,)]


def test_left_out_says_why(workdir, data):
    reasons = {(r["stage"], r["reason"]): r for r in tables.left_out_reasons(workdir, RUN_A).records()}
    assert reasons[("acquire", "PermanentDownloadError")]["videos"] == 1
    assert reasons[("acquire", "TransientDownloadError")]["videos"] == 1
    assert reasons[("score", "MissingScriptError")]["videos"] == 1
    assert reasons[(None, "NotScored")]["videos"] == 1
    assert reasons[("score", "LabelNotScored")]["scorers"] == "actalign"  # v030, only actalign lacks the label row
    per_scorer = dict(run_sql(workdir, "SELECT scorer, count(*) FROM left_out WHERE run_id = ? GROUP BY 1", [RUN_A]).rows)
    accuracy = {r["scorer"]: r["n_missing"] for r in tables.accuracy_rows(workdir, [RUN_A])}
    assert per_scorer == accuracy == {"mean-pool": 4, "actalign": 5}


def test_comparison_paired_bootstrap(workdir, data):
    rows = [(RUN_A, "mean-pool"), (RUN_A, "actalign"), (RUN_B, "actalign")]
    first = tables.comparison_rows(workdir, rows, (RUN_A, "mean-pool"))
    again = tables.comparison_rows(workdir, rows, (RUN_A, "mean-pool"))
    assert first == again  # reproducible with the seed
    other_seed = tables.comparison_rows(workdir, rows, (RUN_A, "mean-pool"), seed=1)
    assert [r["diff_top1_lo"] for r in other_seed] != [r["diff_top1_lo"] for r in first]
    base = expected_ranks(data, RUN_A, "mean-pool")
    for row in first:
        ranks = expected_ranks(data, row["run_id"], row["scorer"])
        paired = sorted(set(ranks) & set(base))
        assert row["n_paired"] == len(paired)
        a = np.array([[ranks[v][0] <= k for k in (1, 2, 3)] for v in paired], dtype=float)
        b = np.array([[base[v][0] <= k for k in (1, 2, 3)] for v in paired], dtype=float)
        reference = explicit_bootstrap(a - b)
        for i, k in enumerate((1, 2, 3)):
            observed = (a[:, i] - b[:, i]).mean()
            assert row[f"diff_top{k}"] == pytest.approx(observed)
            assert row[f"diff_top{k}_lo"] <= observed <= row[f"diff_top{k}_hi"]
            if not row["baseline"]:
                assert row[f"diff_top{k}_lo"] == pytest.approx(reference[0, i], abs=0.02)
                assert row[f"diff_top{k}_hi"] == pytest.approx(reference[1, i], abs=0.02)
    assert first[0]["baseline"] and first[0]["diff_top1"] == 0 and first[0]["diff_top1_lo"] == first[0]["diff_top1_hi"] == 0
    assert first[2]["n_paired"] < first[1]["n_paired"]  # run B lacks v020 and v021


def test_disagreements(workdir, data):
    result = tables.disagreements(workdir, RUN_A, "mean-pool", "actalign")
    mp, aa = expected_ranks(data, RUN_A, "mean-pool"), expected_ranks(data, RUN_A, "actalign")
    expected_right = {v for v in set(mp) & set(aa) if (mp[v][0] == 1) != (aa[v][0] == 1)}
    rows = result.records()
    assert expected_right <= {r["video_id"] for r in rows}
    for r in rows:
        assert r["predicted_a"] != r["predicted_b"] or (r["rank_a"] == 1) != (r["rank_b"] == 1)
        expected = "no label" if r["label"] is None else "actalign" if r["rank_b"] == 1 else "mean-pool" if r["rank_a"] == 1 else "neither"
        assert r["right"] == expected
    view = run_sql(workdir, "SELECT count(*) FROM disagreements WHERE run_id = ? AND scorer_a = 'actalign' AND scorer_b = 'mean-pool'", [RUN_A]).rows
    assert view == [(len(rows),)]
    assert len(tables.disagreements(workdir, RUN_A, "mean-pool", "actalign", limit=3).rows) == 3


def test_worst_errors_and_margins(workdir):
    worst = tables.worst_errors(workdir, RUN_A, "actalign", 5).records()
    assert len(worst) == 5 and all(r["true_rank"] > 1 for r in worst)
    assert [r["margin"] for r in worst] == sorted(r["margin"] for r in worst)
    margins = tables.margins(workdir, RUN_A)
    assert set(margins) == {"mean-pool", "actalign"} and margins["actalign"].min() == worst[0]["margin"]


def test_latest_run_and_run_info(workdir):
    assert tables.latest_run(workdir) == RUN_B
    info = tables.run_info(workdir, RUN_A)
    assert info["model_trained"] is True and json.loads(info["config"])["scorers"] == ["mean-pool", "actalign"]
    assert tables.run_info(workdir, "nope") is None


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_views_and_named_queries_answer_on_an_empty_workdir(tmp_path):
    workdir = Workdir.open(tmp_path / "empty")
    views = ["videos", "frame_embeddings", "scripts", "step_embeddings", "scores", "predictions", "run_scorers", "accuracy",
             "accuracy_by_domain", "left_out", "disagreements", "status", "runs", "llm_requests"]
    for view in views:
        assert run_sql(workdir, f"SELECT * FROM {view}").rows == [], view
    values = {"runs": ["x"], "run_id": "x", "baseline_run": "x", "baseline_scorer": "s", "scorer": "s", "scorer_a": "a", "scorer_b": "b", "limit": 5}
    for name in named_queries():
        query = load_named_query(name)
        assert named_query(workdir, name, **{p: values[p] for p in query.params}).rows == [], name
    assert tables.latest_run(workdir) is None
    assert tables.accuracy_rows(workdir, ["x"]) == [] and tables.accuracy_rows(workdir, [], by_domain=True) == []
    (row,) = tables.comparison_rows(workdir, [("x", "s")], ("x", "s"))
    assert row["n"] == row["n_paired"] == 0 and row["diff_top1"] is None


def test_every_sql_file_says_what_it_answers():
    for path in [*sorted(SQL_DIR.glob("*.sql")), *sorted(NAMED_DIR.glob("*.sql"))]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("-- ") and len(first) > 30, path
    for name in named_queries():
        assert load_named_query(name).doc.startswith(f"{name}:"), name


def test_named_query_checks_its_parameters(workdir):
    with pytest.raises(TypeError, match="missing"):
        named_query(workdir, "worst_errors", run_id=RUN_A, scorer="actalign")
    with pytest.raises(TypeError, match="unknown"):
        named_query(workdir, "latest_run", run_id=RUN_A)
    with pytest.raises(KeyError, match="known"):
        named_query(workdir, "no_such_query")


def test_bootstrap_is_seeded_and_exact_in_edge_cases():
    counts = [30, 10, 5, 55]
    one = stats.topk_bootstrap(counts, key=("a",))
    assert one == stats.topk_bootstrap(counts, key=("a",))
    assert one != stats.topk_bootstrap(counts, key=("b",))  # groups get independent streams
    assert one.estimate == pytest.approx((0.30, 0.40, 0.45))
    assert stats.topk_bootstrap([0, 0, 0, 0]).estimate is None
    everything = stats.topk_bootstrap([7, 0, 0, 0])
    assert everything.lo == everything.hi == (1.0, 1.0, 1.0)
    same = stats.paired_bootstrap(np.diag([5, 3, 2, 10]))
    assert same.estimate == same.lo == same.hi == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        stats.topk_bootstrap([1, 2, 3])
    with pytest.raises(ValueError):
        stats.topk_bootstrap([1, 2, 3, 4], resamples=0)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_wilson_bounds_stay_within_0_and_1_at_the_extremes(p):
    import duckdb

    con = duckdb.connect()
    con.execute((SQL_DIR / "00_macros.sql").read_text())
    lo, hi = con.execute("SELECT min(wilson_lo($p, n)), max(wilson_hi($p, n)) FROM range(1, 200) t(n)", {"p": p}).fetchone()
    assert lo == 0.0 if p == 0.0 else 0.0 <= lo
    assert hi == 1.0 if p == 1.0 else hi <= 1.0


def test_terminal_accuracy_table_names_its_interval(workdir):
    result = tables.accuracy(workdir, RUN_A)
    assert "95 % bootstrap CI" in result.columns
    boot = {r["scorer"]: r for r in tables.accuracy_rows(workdir, [RUN_A])}
    for row in result.records():
        ours = boot[row["scorer"]]
        assert row["95 % bootstrap CI"] == f"{100 * ours['top1_boot_lo']:.1f}-{100 * ours['top1_boot_hi']:.1f}"


def test_writing_commands_leave_current_views_alone_and_repoint_a_moved_workdir(data, tmp_path):
    """``refresh_views`` binds every view over every file (seconds with thousands of files): when the file's
    views are this version's for this workdir, it leaves the file untouched; a moved workdir's are re-pointed."""
    import shutil

    import duckdb

    from actalign.queries.runner import refresh_views

    workdir = write_workdir(tmp_path / "work", data)
    assert refresh_views(workdir) is None
    written = workdir.db_path.stat()
    assert refresh_views(workdir) is None
    assert (workdir.db_path.stat().st_mtime_ns, workdir.db_path.stat().st_size) == (written.st_mtime_ns, written.st_size)

    moved = Workdir.open(shutil.move(workdir.root, tmp_path / "moved"))
    assert refresh_views(moved) is None
    with duckdb.connect(str(moved.db_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
