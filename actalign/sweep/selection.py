"""An honest winner: arms are ranked on the select split and the chosen arm is reported on the held-out one.

The headline figure of a sweep must not be the maximum of many noisy ones: the arm with the best
select-split accuracy is, among arms that differ by noise only, merely the luckiest there; its held-out
accuracy is an unbiased estimate. Differences against the baseline arm are paired by video on the
held-out split, with exact McNemar (sign) tests on top-1 and Holm's correction over the arms.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from actalign.sweep.grid import Selection

SELECT, HELD_OUT = "select", "held_out"


def split_of(video_id: str, domain: str | None, selection: Selection) -> str:
    """A video's split: by a hash of its id (stable across runs and machines), or by its domain."""
    if selection.fraction is None:
        return SELECT if domain in selection.domains else HELD_OUT
    unit = int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "big") / 2**64
    return SELECT if unit < selection.fraction else HELD_OUT


def bucket_counts(ranks: Sequence[int]) -> list[int]:
    """How many videos ranked the true label 1st, 2nd, 3rd, lower (queries.stats' buckets)."""
    counts = [0, 0, 0, 0]
    for rank in ranks:
        counts[min(rank, 4) - 1] += 1
    return counts


def pair_counts(arm: Mapping[str, int], baseline: Mapping[str, int]) -> list[list[int]]:
    """4x4 counts of (arm's bucket, baseline's bucket) over the videos both ranked."""
    counts = [[0] * 4 for _ in range(4)]
    for video, rank in arm.items():
        if video in baseline:
            counts[min(rank, 4) - 1][min(baseline[video], 4) - 1] += 1
    return counts


def top1(ranks: Sequence[int]) -> float | None:
    return sum(rank == 1 for rank in ranks) / len(ranks) if ranks else None


def choose(select_top1: Mapping[str, float | None]) -> str:
    """The arm with the best select-split top-1; ties go to the arm listed first."""
    scored = [(value, -number, name) for number, (name, value) in enumerate(select_top1.items()) if value is not None]
    if not scored:
        raise ValueError("no arm has a labelled, scored video in the select split")
    return max(scored)[2]


def sign_test(arm: Mapping[str, int], baseline: Mapping[str, int]) -> float:
    """Two-sided exact McNemar p-value on top-1 over the videos both ranked: only discordant videos count."""
    wins = sum(1 for v, r in arm.items() if v in baseline and r == 1 and baseline[v] != 1)
    losses = sum(1 for v, r in arm.items() if v in baseline and r != 1 and baseline[v] == 1)
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (step-down, monotone): reject where adjusted p < alpha."""
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    adjusted, running = {}, 0.0
    for position, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - position) * p))
        adjusted[name] = running
    return adjusted


@dataclass(frozen=True)
class Split:
    """Each arm's ranks (video -> rank of the true label) on one split."""

    ranks: dict[str, dict[str, int]]


def split_ranks(ranks: Mapping[str, Mapping[str, int]], splits: Mapping[str, str]) -> dict[str, Split]:
    """arm -> video -> rank into one Split per split name."""
    out = {SELECT: Split({}), HELD_OUT: Split({})}
    for arm, by_video in ranks.items():
        for name in out:
            out[name].ranks[arm] = {v: r for v, r in by_video.items() if splits.get(v) == name}
    return out
