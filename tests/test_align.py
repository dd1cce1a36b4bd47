"""Alignment math against independent references: brute-force enumeration of paths and
segmentations, the plain-Python reference against the compiled kernel, each mode's defining property."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from actalign.align import (
    MODES,
    AlignmentInputError,
    affinity,
    align,
    align_blocks,
    align_candidates,
    align_many,
    block_scores,
    candidate_affinities,
    checked_frames,
    moving_average,
    reference_align,
)
from actalign.errors import ItemError

CAL = {"logit_scale": math.log(10.0), "logit_bias": -5.0}
ALL_MOVES = ((0, 1), (1, 0), (1, 1))


def all_paths(k: int, t: int, moves=ALL_MOVES, open_ends: bool = False):
    """Every path of unit ``moves`` from (0, 0) to (k-1, t-1); with open ends from any (0, t0) to any (k-1, t1)."""

    def walk(path):
        i, j = path[-1]
        if i == k - 1 and (open_ends or j == t - 1):
            yield list(path)
        for di, dj in moves:
            if i + di < k and j + dj < t:
                yield from walk(path + [(i + di, j + dj)])

    for start in range(t if open_ends else 1):
        yield from walk([(0, start)])


def segmentations(k: int, t: int):
    """Every split of t frames into k ordered runs of >= 1 frame, as the step of each frame."""
    for cuts in itertools.combinations(range(1, t), k - 1):
        bounds = (0, *cuts, t)
        yield [step for step in range(k) for _ in range(bounds[step + 1] - bounds[step])]


def path_sum(a: np.ndarray, path) -> float:
    return float(sum(a[tuple(cell)] for cell in path))


def assert_unit_moves(path: np.ndarray, moves=ALL_MOVES) -> None:
    assert all(tuple(b - a) in moves for a, b in itertools.pairwise(path))


def random_matrices(seed: int) -> list[np.ndarray]:
    """Random shapes (K = 1, T = 1 and K > T included) and tie-heavy matrices."""
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 6), (6, 1), (7, 3), (3, 7), (5, 5), (12, 40), *zip(rng.integers(1, 9, 40), rng.integers(1, 9, 40))]
    matrices = [rng.uniform(0.001, 0.999, shape) for shape in shapes]
    matrices += [np.full(shape, 0.5) for shape in [(1, 1), (3, 5), (5, 3), (4, 4)]]  # every path ties
    matrices += [np.repeat(rng.uniform(size=(4, 3)), 3, axis=1), np.repeat(rng.uniform(size=(2, 5)), 3, axis=0)]  # repeated columns, rows
    matrices += [rng.integers(0, 3, shape) / 2 for shape in [(4, 6), (6, 4), (3, 9), (5, 5)]]  # few distinct values, zeros
    matrices += [rng.normal(size=shape) for shape in [(4, 6), (6, 4), (5, 5)]]  # negative entries: diagonals can pay
    return matrices


@pytest.mark.parametrize("mode", MODES)
def test_fast_and_reference_agree_exactly(mode):
    matrices = random_matrices(seed=MODES.index(mode))
    for matrix, fast in zip(matrices, align_many(matrices, mode), strict=True):
        slow = reference_align(matrix, mode)
        assert fast.score == slow.score, matrix.shape
        assert np.array_equal(fast.path, slow.path), (matrix.shape, fast.path, slow.path)


@pytest.mark.parametrize(("k", "t"), [(k, t) for k in range(1, 5) for t in range(1, 5)])
def test_global_finds_the_best_path(k, t):
    rng = np.random.default_rng(10 * k + t)
    for a in (rng.uniform(0.01, 0.99, (k, t)), rng.normal(size=(k, t))):  # positive, then any sign
        result = align_many([a])[0]
        best = max(all_paths(k, t), key=lambda p: path_sum(a, p))
        assert path_sum(a, result.path) == pytest.approx(path_sum(a, best), abs=1e-12)
        assert result.score == pytest.approx(path_sum(a, result.path) / result.path_len, abs=1e-12)
        assert tuple(result.path[0]) == (0, 0) and tuple(result.path[-1]) == (k - 1, t - 1)
        assert_unit_moves(result.path)


def test_global_path_has_t_plus_k_minus_1_cells():
    """Affinities in (0, 1): a diagonal never pays; with exact zeros the tie rule still avoids it."""
    rng = np.random.default_rng(0)
    matrices = [rng.uniform(1e-9, 1.0, (k, t)) for k, t in rng.integers(1, 30, (30, 2))]
    matrices += [rng.integers(0, 2, (k, t)).astype(float) for k, t in rng.integers(1, 12, (20, 2))]
    for a, result in zip(matrices, align_many(matrices), strict=True):
        assert result.path_len == sum(a.shape) - 1
        assert_unit_moves(result.path, moves=((0, 1), (1, 0)))


def test_ties_follow_the_documented_order():
    """Constant matrices: global goes down column 0 then along the last step; segment gives early steps one frame."""
    k, t = 3, 5
    flat = np.full((k, t), 0.5)
    down_then_right = [(i, 0) for i in range(k)] + [(k - 1, j) for j in range(1, t)]
    assert align_many([flat])[0].path.tolist() == [list(c) for c in down_then_right]
    assert align_many([flat], "subsequence")[0].path.tolist() == [list(c) for c in down_then_right]
    assert align_many([flat], "segment")[0].path.tolist() == [[0, 0], [1, 1], [2, 2], [2, 3], [2, 4]]


@pytest.mark.parametrize(("k", "t"), [(1, 1), (1, 4), (2, 3), (3, 3), (3, 5), (4, 2), (2, 6)])
def test_subsequence_finds_the_best_mean(k, t):
    rng = np.random.default_rng(k * 7 + t)
    a = rng.uniform(0.01, 0.99, (k, t))
    result = align_many([a], "subsequence")[0]
    best = max(path_sum(a, p) / len(p) for p in all_paths(k, t, open_ends=True))
    assert result.score == pytest.approx(best, abs=1e-12)
    assert result.score == pytest.approx(path_sum(a, result.path) / result.path_len, abs=1e-12)
    assert result.path[0][0] == 0 and result.path[-1][0] == k - 1 and result.path_len >= k
    assert_unit_moves(result.path)
    assert result.score >= align_many([a])[0].score


@pytest.mark.parametrize(("k", "t"), [(1, 1), (1, 5), (2, 2), (2, 6), (3, 6), (4, 7), (5, 5)])
def test_segment_is_the_best_segmentation(k, t):
    a = np.random.default_rng(k * 11 + t).uniform(0.01, 0.99, (k, t))
    result = align_many([a], "segment")[0]
    best = max(sum(a[step, frame] for frame, step in enumerate(steps)) / t for steps in segmentations(k, t))
    assert result.score == pytest.approx(best, abs=1e-12)
    steps, frames = result.path.T
    assert frames.tolist() == list(range(t))  # every frame exactly once, in order
    assert steps[0] == 0 and set(np.diff(steps)) <= {0, 1} and steps[-1] == k - 1  # steps in order, none skipped


def test_segment_with_fewer_frames_than_steps_swaps_the_roles():
    a = np.random.default_rng(3).uniform(0.01, 0.99, (6, 4))
    short, transposed = align_many([a, a.T.copy()], "segment")
    assert short.score == transposed.score
    assert np.array_equal(short.path, transposed.path[:, ::-1])
    assert short.path_len == 6 and short.path[:, 0].tolist() == list(range(6))


def one_hot(indices, dim: int = 8) -> np.ndarray:
    return np.eye(dim)[list(indices)]


def test_subsequence_ignores_frames_outside_the_action():
    good = one_hot([0, 0, 1, 1, 2, 2])
    noise = np.random.default_rng(0).normal(size=(9, 8)) * np.r_[np.zeros(3), np.ones(5)]  # orthogonal to the events
    video = np.concatenate([noise[:4], good, noise[4:]])
    steps = one_hot([0, 1, 2])
    padded = align(video, steps, mode="subsequence", **CAL)
    assert padded.score == pytest.approx(align(good, steps, mode="subsequence", **CAL).score, abs=1e-12)
    assert padded.score > align(video, steps, **CAL).score + 0.2
    assert 4 <= padded.path[0][1] and padded.path[-1][1] < 10  # the span stays inside the action


def test_align_candidates_is_align_per_candidate():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(20, 16))
    scripts = [rng.normal(size=(k, 16)) for k in (3, 1, 7)]
    for mode in MODES:
        batched = align_candidates(frames, scripts, smooth=3, mode=mode, **CAL)
        for script, together in zip(scripts, batched, strict=True):
            alone = align(frames, script, smooth=3, mode=mode, **CAL)
            assert together.score == pytest.approx(alone.score, abs=1e-15) and np.array_equal(together.path, alone.path)
            assert np.allclose(together.affinity, affinity(moving_average(frames, 3), script, **CAL), rtol=0, atol=1e-15)
    assert align_candidates(frames, [], **CAL) == [] and align_many([]) == []


def test_float32_embeddings_keep_their_precision_in_the_product_only():
    """The product's rounding depends on the batch's shape: float32 scores agree to about 1e-9."""
    rng = np.random.default_rng(2)
    frames, script = rng.normal(size=(30, 64)), rng.normal(size=(4, 64))
    exact = align(frames, script, **CAL)
    single = align(frames.astype(np.float32), script.astype(np.float32), **CAL)
    assert single.affinity.dtype == np.float64
    assert single.score == pytest.approx(exact.score, abs=1e-8) and np.array_equal(single.path, exact.path)


def test_affinity_uses_the_checkpoint_calibration():
    a = affinity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 1.0]]), **CAL)
    assert a[:, 0] == pytest.approx([1 / (1 + np.exp(-(10 - 5))), 1 / (1 + np.exp(5))])


def test_moving_average_zero_padded_same_length():
    frames = np.arange(5, dtype=float)[:, None]
    assert moving_average(frames, 3)[:, 0] == pytest.approx([1 / 3, 1, 2, 3, 7 / 3])
    assert moving_average(frames, 2)[:, 0] == pytest.approx([0.5, 1.5, 2.5, 3.5, 2])  # even: leans forward
    assert moving_average(frames, 1) is frames and moving_average(frames, 0) is frames
    with pytest.raises(ValueError, match="smoothing width"):
        moving_average(frames, -1)


GOOD_FRAMES, GOOD_STEPS = np.ones((4, 3)), np.ones((2, 3))


@pytest.mark.parametrize(
    ("frames", "steps", "message"),
    [
        (np.ones((0, 3)), GOOD_STEPS, r"frames: expected a non-empty 2-D array, got shape \(0, 3\)"),
        (GOOD_FRAMES, np.ones((0, 3)), r"steps of candidate 0: expected a non-empty 2-D array"),
        (GOOD_FRAMES, np.ones(3), r"steps of candidate 0: expected a non-empty 2-D array, got shape \(3,\)"),
        (np.where(np.eye(4, 3), np.nan, 1.0), GOOD_STEPS, r"frames: 3 NaN or infinite value\(s\)"),
        (GOOD_FRAMES, np.array([[1.0, np.inf, 0.0], [1.0, 1.0, 1.0]]), r"steps of candidate 0: 1 NaN or infinite"),
        (GOOD_FRAMES, np.ones((2, 5)), r"steps of candidate 0: dimension 5 does not match the frames' 3"),
    ],
)
def test_bad_embeddings_raise_an_item_error_naming_the_problem(frames, steps, message):
    with pytest.raises(AlignmentInputError, match=message) as caught:
        align(frames, steps, **CAL)
    assert isinstance(caught.value, ItemError) and isinstance(caught.value, ValueError)


def test_bad_matrices_modes_and_calibrations():
    with pytest.raises(AlignmentInputError, match=r"affinity matrix 1: 1 NaN"):
        align_many([np.ones((2, 2)), np.array([[0.5, np.nan]])])
    with pytest.raises(AlignmentInputError, match="affinity matrix 0: expected a non-empty 2-D array"):
        align_many([np.ones((2, 0))])
    with pytest.raises(ValueError, match="unknown alignment mode 'best'"):
        align_many([np.ones((2, 2))], "best")
    with pytest.raises(AlignmentInputError, match="calibration must be finite"):
        align(GOOD_FRAMES, GOOD_STEPS, logit_scale=math.nan, logit_bias=0.0)
    with pytest.raises(AlignmentInputError, match="axe-kick: dimension 2 does not match"):
        align_candidates(GOOD_FRAMES, [GOOD_STEPS, np.ones((1, 2))], labels=["spin", "axe-kick"], **CAL)


def numpy_affinity(frames: np.ndarray, steps: np.ndarray, logit_scale: float, logit_bias: float) -> np.ndarray:
    """The affinity as NumPy computed it before the compiled pass: the same product and norms in the
    embeddings' precision, then float64 cosines and sigmoid with NumPy's vectorised exp."""
    frame_norms, step_norms = (np.sqrt(np.einsum("ij,ij->i", rows, rows)) for rows in (frames, steps))
    cosines = (steps @ frames.T).astype(np.float64) / np.outer(step_norms, frame_norms)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(math.exp(logit_scale) * cosines + logit_bias)))


# (logit_scale, logit_bias): SigLIP-like; a bias that makes most sigmoids underflow to exactly 0; one that saturates them to 1
CALIBRATIONS = [(math.log(117.3), -12.9), (math.log(900.0), -800.0), (math.log(50.0), 40.0)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("logit_scale", "logit_bias"), CALIBRATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_affinities_are_numpys_and_align_as_the_reference(mode, logit_scale, logit_bias, dtype):
    """The compiled sigmoid is NumPy's to the last bits of exp; aligned in place (``align_blocks``) or copied
    (``align_many``), its blocks score and align exactly as the reference on them, for every smoothing width,
    with sigmoids that underflow to 0 or saturate to 1, and with fewer frames than steps."""
    rng = np.random.default_rng(hash((mode, logit_bias, str(dtype))) % 2**32)
    for frames_count, smooth in [(30, 0), (30, 1), (30, 2), (30, 5), (4, 0), (1, 3)]:  # 4 and 1 frames: fewer than most scripts' steps
        frames = rng.normal(size=(frames_count, 16)).astype(dtype)
        scripts = [rng.normal(size=(k, 16)).astype(dtype) for k in (6, 1, 9, 3)]
        stacked = candidate_affinities(checked_frames(frames), scripts, str, logit_scale, logit_bias, smooth)
        expected = numpy_affinity(moving_average(frames, smooth), np.concatenate(scripts), logit_scale, logit_bias)  # one product: its rounding depends on its shape
        np.testing.assert_allclose(stacked.matrix, expected, rtol=1e-13, atol=0)  # exp's last bits may differ
        in_place = align_blocks(stacked, range(len(scripts)), mode)
        copied = align_many([stacked.block(i).copy() for i in range(len(scripts))], mode)
        for a, b in zip(in_place, copied, strict=True):
            reference = reference_align(a.affinity, mode)
            assert a.score == b.score == reference.score and np.array_equal(a.path, reference.path) and np.array_equal(b.path, reference.path)
        assert stacked.matrix.min() >= 0.0 and stacked.matrix.max() <= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_sigmoid_is_numpys_over_every_logit_from_saturation_to_underflow(dtype):
    """Logits from -760 to 760 in small steps, across exp's overflow at 709.78 and the sigmoid's saturation at 1:
    within 1e-13 of NumPy's wherever the sigmoid is not 0, and exactly 0 and exactly 1 where NumPy's is."""
    angles = np.linspace(0.0, np.pi, 40001)
    frames = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(dtype)
    steps = np.array([[1.0, 0.0], [-3.0, 0.0]], dtype=dtype)
    scale, bias = math.log(760.0), 0.0
    matrix = affinity(frames, steps, logit_scale=scale, logit_bias=bias)
    expected = numpy_affinity(frames, steps, scale, bias)
    assert np.array_equal(matrix == 0.0, expected == 0.0) and np.array_equal(matrix == 1.0, expected == 1.0)
    assert (expected == 0.0).any() and (expected == 1.0).any() and ((expected > 0.0) & (expected < 1e-300)).any()
    np.testing.assert_allclose(matrix, expected, rtol=1e-13, atol=0)


def test_sigmoids_that_underflow_are_exactly_zero_and_score_as_the_reference():
    frames, steps = np.eye(3, 4), -np.eye(2, 4)  # cosines 0 and -1: logits -800 and -1700, exp(-logit) overflows
    stacked = candidate_affinities(checked_frames(frames), [steps], str, math.log(900.0), -800.0)
    (scores, lengths), alignment = block_scores(stacked, [0], "subsequence"), reference_align(stacked.matrix, "subsequence")
    assert np.all(stacked.matrix == 0.0)
    assert scores == [alignment.score] == [0.0] and lengths == [alignment.path_len]


def test_block_scores_are_the_scores_and_path_lengths_of_align_blocks_for_any_candidates():
    rng = np.random.default_rng(5)
    frames, scripts = rng.normal(size=(12, 8)), [rng.normal(size=(k, 8)) for k in (3, 14, 1)]
    for mode in MODES:
        for which in ([0, 1, 2], [2, 0], [1], []):
            stacked = candidate_affinities(checked_frames(frames), scripts, str, **CAL)
            scores, lengths = block_scores(stacked, which, mode)
            alignments = align_blocks(stacked, which, mode)
            assert scores == [a.score for a in alignments] and lengths == [a.path_len for a in alignments]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones(3), r"axe-kick: expected a non-empty 2-D array, got shape \(3,\)"),
        (np.ones((0, 3)), r"axe-kick: expected a non-empty 2-D array, got shape \(0, 3\)"),
        (np.ones((1, 2, 3)), r"axe-kick: expected a non-empty 2-D array, got shape \(1, 2, 3\)"),
        (np.ones((2, 2)), r"axe-kick: dimension 2 does not match the frames' 3"),
        (np.array([[1.0, np.nan, 0.0]]), r"axe-kick: 1 NaN or infinite value"),
    ],
)
def test_a_bad_candidate_among_good_ones_is_named(bad, message):
    """Shapes are checked on the stacked steps, and each candidate only when one is bad: the first bad one is named."""
    for candidates, labels in (([GOOD_STEPS, bad], ["spin", "axe-kick"]), ([bad, bad.copy()], ["axe-kick", "spin"])):
        with pytest.raises(AlignmentInputError, match=message):
            align_candidates(GOOD_FRAMES, candidates, labels=labels, **CAL)
    with pytest.raises(AlignmentInputError, match="axe-kick: dimension 2"):  # every candidate of the wrong dimension
        align_candidates(GOOD_FRAMES, [np.ones((2, 2)), np.ones((1, 2))], labels=["axe-kick", "spin"], **CAL)
