"""Scorers against independent references: brute-force path enumeration, hand computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from actalign.errors import InputError
from actalign.scorers import ActAlign, Calibration, ClassTexts, MeanPool, affinity, make_scorer, max_plus_dtw, moving_average

CAL = Calibration(logit_scale=np.log(10.0), logit_bias=-5.0)


def all_paths(k: int, t: int):
    """Every monotone path from (0,0) to (k-1,t-1) with unit moves right, down or diagonal."""
    def walk(path):
        i, j = path[-1]
        if (i, j) == (k - 1, t - 1):
            yield list(path)
            return
        for di, dj in ((0, 1), (1, 0), (1, 1)):
            if i + di < k and j + dj < t:
                yield from walk(path + [(i + di, j + dj)])
    yield from walk([(0, 0)])


@pytest.mark.parametrize(("k", "t", "seed"), [(1, 1, 0), (1, 5, 1), (3, 3, 2), (3, 6, 3), (4, 5, 4)])
def test_dtw_finds_the_best_path(k, t, seed):
    scores = np.random.default_rng(seed).uniform(0.01, 0.99, (k, t))
    total, path = max_plus_dtw(scores)
    best = max(sum(scores[c] for c in p) for p in all_paths(k, t))
    assert total == pytest.approx(best)
    assert total == pytest.approx(sum(scores[c] for c in path))
    assert path[0] == (0, 0) and path[-1] == (k - 1, t - 1)
    assert all(0 <= b[0] - a[0] <= 1 and 0 <= b[1] - a[1] <= 1 and a != b for a, b in itertools.pairwise(path))
    assert len(path) == k + t - 1  # positive affinities: a diagonal move never pays


def one_hot(indices, dim=4):
    return np.eye(dim)[list(indices)]


def test_actalign_sees_order_and_mean_pool_does_not():
    frames = one_hot([0, 0, 1, 1, 2, 2])  # event 0, then 1, then 2
    forward = ClassTexts("fwd", one_hot([0, 1, 2]), name=np.ones(4))
    backward = ClassTexts("bwd", one_hot([2, 1, 0]), name=np.ones(4))
    align = ActAlign()
    assert align(frames, forward, CAL).score > align(frames, backward, CAL).score
    assert MeanPool()(frames, forward, CAL).score == pytest.approx(MeanPool()(frames, backward, CAL).score)
    assert align(frames, forward, CAL).path_len == 3 + 6 - 1


def test_mean_pool_is_the_cosine_of_the_mean_normalised_frame():
    frames = np.array([[3.0, 0.0], [0.0, 0.5]])
    texts = ClassTexts("c", np.zeros((1, 2)), name=np.array([2.0, 0.0]))
    assert MeanPool()(frames, texts, CAL).score == pytest.approx(1 / np.sqrt(2))


def test_affinity_uses_the_checkpoint_calibration():
    a = affinity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 1.0]]), CAL)
    assert a[:, 0] == pytest.approx([1 / (1 + np.exp(-(10 - 5))), 1 / (1 + np.exp(5))])


def test_moving_average_zero_padded_same_length():
    frames = np.arange(5, dtype=float)[:, None]
    assert moving_average(frames, 3)[:, 0] == pytest.approx([1 / 3, 1, 2, 3, 7 / 3])
    assert moving_average(frames, 1) is frames


def test_unknown_scorer():
    with pytest.raises(InputError, match="unknown scorer 'best'"):
        make_scorer("best")
