"""Bootstrap intervals for top-k accuracy and for paired top-k differences (NumPy, no database).

Method: the nonparametric percentile bootstrap over videos. One resample
draws n videos with replacement from the n scored videos; the statistic is
recomputed on it; the interval is the (2.5 %, 97.5 %) quantiles (NumPy's
default linear interpolation) of ``RESAMPLES`` = 1000 resamples. For a
difference between two (run, scorer) rows, the resampled unit is a video
scored by both (paired by video_id), so that both rows see the same videos.

How a resample is drawn: every statistic here is a mean over videos of a
per-video outcome that takes few values: the bucket of the true label's rank
(1st, 2nd, 3rd or lower; top-k = the share of videos in buckets <= k), or,
paired, the pair of buckets (16 values). A resample is therefore completely
described by how many of its n draws land in each outcome, and those counts
follow Multinomial(n, observed shares) exactly: the same distribution as
drawing n video indices with replacement, at a cost of O(resamples x outcomes)
instead of O(resamples x n). The inputs are the outcome counts that
``queries/named/rank_counts.sql`` and ``paired_rank_counts.sql`` compute in
DuckDB, so 93,400 videos cost no more than 100. ``tests/test_queries.py``
checks the intervals against explicit index resampling.

Determinism: each group (e.g. scorer, domain) gets its own generator
seeded from (``seed``, a SHA-256 of the group's key), so an interval does not
depend on which other groups were computed alongside it, nor on their order.
An accuracy interval's key leaves out the run: the same outcomes of the same
scorer give the same interval in every run, so an unchanged re-run reports (and
draws, ``queries.report.figures``) exactly what the run before it did.

Caveat: with few videos, or an accuracy of 0 or 100 %, a percentile bootstrap
interval is too narrow (it is [0, 0] when nothing is right); the SQL views'
Wilson intervals (``top1_lo``, ``top1_hi``) stay conservative there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
BUCKETS = 4  # the true label ranked 1st, 2nd, 3rd, or lower
TOPK = (1, 2, 3)

# HITS[b, k-1] = 1 when a video in rank bucket b+1 counts for top-k.
HITS = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=np.int64)
# Paired outcome (bucket a, bucket b) -> the per-video difference of top-k hits, a - b.
PAIR_DIFFS = (HITS[:, None, :] - HITS[None, :, :]).reshape(BUCKETS * BUCKETS, len(TOPK))

__all__ = ["RESAMPLES", "SEED", "LEVEL", "TopK", "topk_bootstrap", "paired_bootstrap", "group_rng", "method_note", "check_options"]


@dataclass(frozen=True)
class TopK:
    """Top-1/2/3 over n videos with percentile bootstrap intervals (all None when n = 0).

    From ``topk_bootstrap``: accuracies. From ``paired_bootstrap``: a row's accuracies minus
    the baseline's over the n videos both scored, with paired intervals.
    """

    n: int
    estimate: tuple[float, float, float] | None
    lo: tuple[float, float, float] | None
    hi: tuple[float, float, float] | None


def group_rng(seed: int, key: Sequence[object]) -> np.random.Generator:
    """A generator for one group, from the seed and a stable hash of the group's key."""
    digest = hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def _bootstrap(raw: object, what: str, shape: tuple[int, ...], values: np.ndarray, key: Sequence[object], resamples: int, seed: int, level: float) -> TopK:
    """The mean over videos of ``values[outcome]`` (one column per k), from ``raw``: how many videos had each outcome."""
    check_options(resamples, level)
    counts = np.asarray(raw, dtype=np.int64)
    if counts.shape != shape or (counts < 0).any():
        raise ValueError(f"{what} must be {'x'.join(map(str, shape))} non-negative counts, got {raw!r}")
    counts = counts.reshape(-1)
    n = int(counts.sum())
    if n == 0:
        return TopK(0, None, None, None)
    estimate = tuple(map(float, counts @ values / n))
    draws = group_rng(seed, key).multinomial(n, counts / n, size=resamples)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws @ values / n, [tail, 1.0 - tail], axis=0)
    return TopK(n, estimate, tuple(map(float, lo)), tuple(map(float, hi)))  # type: ignore[arg-type]


def check_options(resamples: int, level: float) -> None:
    """Raise ValueError for a resample count below 1 or a level outside (0, 1)."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def topk_bootstrap(
    bucket_counts: Sequence[int],
    *,
    key: Sequence[object] = (),
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> TopK:
    """``bucket_counts[b]``: how many scored videos ranked the true label in bucket b+1 (1, 2, 3, lower)."""
    return _bootstrap(bucket_counts, "bucket_counts", (BUCKETS,), HITS, key, resamples, seed, level)


def paired_bootstrap(
    pair_counts: np.ndarray | Sequence[Sequence[int]],
    *,
    key: Sequence[object] = (),
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> TopK:
    """``pair_counts[a, b]``: videos in the row's rank bucket a+1 and the baseline's bucket b+1."""
    return _bootstrap(pair_counts, "pair_counts", (BUCKETS, BUCKETS), PAIR_DIFFS, key, resamples, seed, level)


def method_note(resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> str:
    """One sentence for reports: how the intervals were computed."""
    return (
        f"{level:.0%} intervals: percentile bootstrap over videos, {resamples} resamples, seed {seed}; "
        "differences are paired by video over the videos both rows scored. "
        "Ties count against the true label (a tie is not a win). "
        "With few videos or accuracies near 0 or 100 % these intervals are too narrow; "
        "the SQL views also give Wilson intervals (top1_lo, top1_hi)."
    )
