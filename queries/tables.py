"""Named tables of one run or several: the CLI's printed tables, the run report and the artifacts.

The point estimates come from the SQL views (``accuracy``, ``accuracy_by_domain``,
``predictions``); the bootstrap intervals from ``queries.stats`` over the
outcome counts of ``queries/named/rank_counts.sql`` and
``paired_rank_counts.sql``. Every function takes a ``Workdir`` or an open
``Session`` (several tables over one connection).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from actalign.queries import stats
from actalign.queries.runner import Result, Session, session
from actalign.storage.workdir import Workdir

Source = Workdir | Session


@contextmanager
def open_source(source: Source) -> Iterator[Session]:
    """The caller's session as it is, or a new one on a workdir: a task that asks several questions shares one."""
    if isinstance(source, Session):
        yield source
    else:
        with session(source) as s:
            yield s


# --------------------------------------------------------------------------- runs


def latest_run(source: Source) -> str | None:
    """The most recently started run, or None on an empty workdir."""
    with open_source(source) as s:
        rows = s.named("latest_run").rows
    return rows[0][0] if rows else None


def run_info(source: Source, run_id: str) -> dict[str, Any] | None:
    with open_source(source) as s:
        records = s.named("run_info", run_id=run_id).records()
    return records[0] if records else None


def run_scripts(source: Source, run_id: str) -> Result:
    with open_source(source) as s:
        return s.named("run_scripts", run_id=run_id)


# --------------------------------------------------------------------------- accuracy with bootstrap intervals


def accuracy_rows(
    source: Source,
    runs: Sequence[str],
    *,
    by_domain: bool = False,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    level: float = stats.LEVEL,
) -> list[dict[str, Any]]:
    """The ``accuracy`` (or ``accuracy_by_domain``) view's rows of ``runs`` (fractions in 0..1), each with
    percentile bootstrap intervals added as ``top{k}_boot_lo`` / ``top{k}_boot_hi`` (None when n = 0)."""
    runs = list(dict.fromkeys(runs))
    with open_source(source) as s:
        view = s.named("accuracy_by_domain" if by_domain else "accuracy", runs=runs).records()
        counts = s.named("rank_counts", runs=runs).rows
    buckets: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(stats.BUCKETS, dtype=np.int64))
    for run_id, scorer, domain, bucket, videos in counts:
        key = (run_id, scorer, domain) if by_domain else (run_id, scorer)
        buckets[key][bucket - 1] += videos
    rows = []
    for row in view:
        key = (row["run_id"], row["scorer"], row["domain"]) if by_domain else (row["run_id"], row["scorer"])
        result = stats.topk_bootstrap(buckets[key], key=("topk", *key[1:]), resamples=resamples, seed=seed, level=level)  # not the run
        if result.n != row["n"]:  # both come from the predictions view; a mismatch is a bug here
            raise AssertionError(f"rank counts ({result.n}) disagree with the accuracy view ({row['n']}) for {key}")
        for i, k in enumerate(stats.TOPK):
            row[f"top{k}_boot_lo"] = result.lo[i] if result.lo else None
            row[f"top{k}_boot_hi"] = result.hi[i] if result.hi else None
        rows.append(row)
    return rows


def comparison_rows(
    source: Source,
    rows: Sequence[tuple[str, str]],
    baseline: tuple[str, str],
    *,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    level: float = stats.LEVEL,
) -> list[dict[str, Any]]:
    """One dict per (run, scorer) in ``rows``: its top-1/2/3 over all its scored videos (with bootstrap
    intervals), and ``diff_top{k}`` = its top-k minus the baseline's over the ``n_paired`` videos both
    scored (paired by video_id and label), with a paired bootstrap interval ``diff_top{k}_lo/_hi``."""
    rows = list(dict.fromkeys((str(r), str(s)) for r, s in rows))
    runs = list(dict.fromkeys([r for r, _ in rows] + [baseline[0]]))
    with open_source(source) as s:
        accuracy = {(a["run_id"], a["scorer"]): a for a in accuracy_rows(s, runs, resamples=resamples, seed=seed, level=level)}
        paired = s.named("paired_rank_counts", runs=runs, baseline_run=baseline[0], baseline_scorer=baseline[1]).rows
    pairs: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros((stats.BUCKETS, stats.BUCKETS), dtype=np.int64))
    for run_id, scorer, bucket, base_bucket, videos in paired:
        pairs[(run_id, scorer)][bucket - 1, base_bucket - 1] += videos
    out = []
    for run_id, scorer in rows:
        acc = accuracy.get((run_id, scorer))
        row: dict[str, Any] = {"run_id": run_id, "scorer": scorer, "baseline": (run_id, scorer) == tuple(baseline)}
        row["n"] = acc["n"] if acc else 0
        for k in stats.TOPK:
            for suffix in ("", "_boot_lo", "_boot_hi"):
                row[f"top{k}{suffix}"] = acc[f"top{k}{suffix}"] if acc else None
            row[f"random_top{k}"] = acc[f"random_top{k}"] if acc else None
        diff = stats.paired_bootstrap(
            pairs[(run_id, scorer)], key=("paired", run_id, scorer, *baseline), resamples=resamples, seed=seed, level=level
        )
        row["n_paired"] = diff.n
        for i, k in enumerate(stats.TOPK):
            row[f"diff_top{k}"] = diff.estimate[i] if diff.estimate else None
            row[f"diff_top{k}_lo"] = diff.lo[i] if diff.lo else None
            row[f"diff_top{k}_hi"] = diff.hi[i] if diff.hi else None
        out.append(row)
    return out


# --------------------------------------------------------------------------- error analysis


def left_out_reasons(source: Source, run_id: str) -> Result:
    with open_source(source) as s:
        return s.named("left_out_reasons", run_id=run_id)


def disagreements(source: Source, run_id: str, scorer_a: str, scorer_b: str, limit: int | None = None) -> Result:
    with open_source(source) as s:
        return s.named("disagreements", run_id=run_id, scorer_a=scorer_a, scorer_b=scorer_b, limit=limit)


def worst_errors(source: Source, run_id: str, scorer: str, limit: int) -> Result:
    with open_source(source) as s:
        return s.named("worst_errors", run_id=run_id, scorer=scorer, limit=limit)


def margins(source: Source, run_id: str) -> dict[str, np.ndarray]:
    """scorer -> the margins of its scored videos (label score minus the best other score)."""
    with open_source(source) as s:
        rows = s.named("margins", run_id=run_id).rows
    by_scorer: dict[str, list[float]] = defaultdict(list)
    for scorer, _, margin in rows:
        by_scorer[scorer].append(margin)
    return {scorer: np.asarray(values, dtype=float) for scorer, values in by_scorer.items()}


# --------------------------------------------------------------------------- the CLI's printed tables


def accuracy(source: Source, run_id: str) -> Result:
    """Per scorer: n scored, missing, top-1 % with its bootstrap interval, top-2/3 %, each accuracy with
    the random baseline for the run's mix of candidate counts beside it in brackets."""
    rows = accuracy_rows(source, [run_id])

    def ci(row):
        lo, hi = row["top1_boot_lo"], row["top1_boot_hi"]
        return None if lo is None else f"{100 * lo:.1f}-{100 * hi:.1f}"

    def with_random(row, k):
        value, chance = row[f"top{k}"], row[f"random_top{k}"]
        return None if value is None else f"{100 * value:.1f} ({100 * chance:.1f})"

    return Result(
        ["scorer", "n", "missing", "top-1 % (random)", "95 % bootstrap CI", "top-2 % (random)", "top-3 % (random)"],
        [(r["scorer"], r["n"], r["n_missing"], with_random(r, 1), ci(r), with_random(r, 2), with_random(r, 3)) for r in rows],
    )


PREDICTIONS_TITLE = {
    True: "Predictions (* = correct: the true class ranked first; a tie is not a win)",
    False: "Predictions (score, and in brackets its margin over the runner-up)",
}


def has_labels(source: Source, run_id: str) -> bool:
    """Whether any video of the run has a label: without one there is no accuracy to compute."""
    with open_source(source) as s:
        return bool(s.sql("SELECT count(label) FROM videos WHERE run_id = ?", [run_id]).rows[0][0])


def predictions(source: Source, run_id: str) -> Result:
    """One row per video: the label and each scorer's prediction (``PREDICTIONS_TITLE`` says how to read it).
    With labels a * marks a correct one; without, each prediction carries its score and its margin over the
    runner-up, the only confidence an unlabelled run has."""
    with open_source(source) as s:
        scorers = [row[0] for row in s.sql("SELECT DISTINCT scorer FROM predictions WHERE run_id = ? ORDER BY 1", [run_id]).rows]
        if has_labels(s, run_id):
            label = ", coalesce(any_value(label), '') AS label"
            cell, source_sql = "predicted || CASE WHEN true_rank = 1 THEN ' *' ELSE '' END", "predictions"
        else:
            label = ""
            cell = "predicted || ' ' || printf('%.4g', top) || coalesce(' (' || printf('%+.2g', top - runner_up) || ')', '')"
            source_sql = """(SELECT run_id, video_id, scorer, arg_max(candidate, score) AS predicted, max(score) AS top,
                                    list_sort(list(score), 'DESC')[2] AS runner_up
                             FROM scores WHERE run_id = $1 GROUP BY ALL)"""
        columns = "".join(f""", first({cell}) FILTER (WHERE scorer = ${i + 2}) AS "{name}\"""" for i, name in enumerate(scorers))
        return s.sql(
            f"SELECT video_id{label}{columns} FROM {source_sql} WHERE run_id = $1 GROUP BY video_id ORDER BY video_id",
            [run_id, *scorers],
        )


def failures(source: Source, run_id: str) -> Result:
    with open_source(source) as s:
        return s.named("failures", run_id=run_id)
