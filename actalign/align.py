"""Alignment of an ordered script of sub-action steps with a video's frames (ActAlign).

For frame embeddings F (T x d) and step embeddings S (K x d):

1. ``moving_average``: optional smoothing of F along time (width w, zero padded).
2. ``affinity``: ``A[k, t] = sigmoid(exp(logit_scale) * cos(s_k, f_t) + logit_bias)``.
3. A max-plus DP over monotone paths of unit moves (0,+1), (+1,0), (+1,+1)
   through A: ``D[k, t] = A[k, t] + max(D[k, t-1], D[k-1, t], D[k-1, t-1])``.
4. Score = the summed affinity on the chosen path / the number of cells on it.

Modes (``MODES``) differ only in the paths they allow and in how they choose one:

- ``global`` (the paper): from (0, 0) to (K-1, T-1), the path of largest sum.
  A surprising property: with affinities > 0 the best path never takes a
  diagonal step, because replacing (k-1,t-1)->(k,t) by (k-1,t-1)->(k,t-1)->(k,t)
  adds one positive cell. So path_len is always T+K-1 and the score is the best
  sum over a constant. (With affinities >= 0, e.g. a sigmoid that underflows to
  0, the tie rule below still keeps the path off the diagonal.)
- ``subsequence``: open begin and end in time, from (0, t0) to (K-1, t1). A
  largest *sum* would just be the global path again (every extra cell adds),
  so this mode takes the path of largest *mean*, found exactly by Dinkelbach's
  method: from the global path, repeat the DP on A - lambda, lambda the mean of
  the last path, while the mean strictly rises (4-7 DP passes in all on 12 x 195
  matrices: about 4x the DP work of ``global``). The score is never below the
  global one; frames before t0 and after t1 are ignored.
  Every step is still visited, so path_len >= K. Limits: the mean of a short
  path is a maximum over many spans, biased upwards and noisier; with K = 1 it
  is the single best frame, and a frame matching all steps at once can carry a
  whole path of K vertical moves. Short scripts and peaky frames profit when
  candidates are compared.
- ``segment``: every frame belongs to exactly one step, steps in order, each at
  least one frame: moves (0,+1) and (+1,+1) only, path_len = T, score = sum / T,
  so scores are comparable across scripts of any length. When T < K the roles
  swap (moves (+1,0) and (+1,+1)): each step gets exactly one frame, frames in
  order, each at least one step, score = sum / K; a short video is scored
  rather than failing every scorer of its video.

Ties are broken identically by both implementations: a cell's predecessor is
the first maximum among, in order, starting here (row 0; only at (0, 0) unless
the begin is open), the previous frame on the same step, the previous step on
the same frame, the diagonal. On a constant matrix the global path therefore
goes down column 0 and along the last step. An open end takes the latest frame
of the best value. ``subsequence`` returns the last path that strictly raised
the mean (the global path if none did).

Two implementations: ``reference_align`` in plain Python mirroring the
equations, and the compiled kernel behind ``align_many`` and the scorers
(numba, compiled on first use, once per process, in seconds; importing this
module imports numba and compiles nothing). The reference records
each cell's predecessor as it goes; the kernel computes values only and picks
predecessors while tracing the path back. Both add the same numbers in the
same order and pick by the same rule, so their scores and paths agree exactly.

Drop-DTW (after Dvornik et al. 2021: frames may be dropped at a cost, every step
matched in order) is at the end of this module, again as a plain-Python reference
(``reference_drop_dtw``) and a compiled twin (``drop_dtw_many``, ``drop_dtw_candidates``)
that agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

import numba
import numpy as np

from actalign.errors import ItemError

MODES = ("global", "subsequence", "segment")


class AlignmentInputError(ItemError, ValueError):
    """Embeddings or affinities that cannot be aligned: empty, not finite, or of mismatched dimension."""


@dataclass(frozen=True, eq=False)
class Alignment:
    """A scored path through ``affinity``: ``path[i] = (step, frame)``, first cell first."""

    score: float
    path: np.ndarray
    affinity: np.ndarray

    @property
    def path_len(self) -> int:
        return len(self.path)


def check_rows(rows: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """``rows`` as a non-empty, finite (n, d) float array, else an AlignmentInputError naming ``what``.

    float32 stays float32 (the towers' and the store's precision); other types become float64.
    """
    array = np.asarray(rows)
    if array.ndim != 2 or 0 in array.shape:
        raise AlignmentInputError(f"{what}: expected a non-empty 2-D array, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise AlignmentInputError(f"{what}: dimension {array.shape[1]} does not match the frames' {dim}")
    finite = np.isfinite(array)
    if not finite.all():
        raise AlignmentInputError(f"{what}: {array.size - np.count_nonzero(finite)} NaN or infinite value(s)")
    return array.astype(np.result_type(array.dtype, np.float32), copy=False)


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    """Normalise each row on its own (a zero row stays zero), as a new float64 array."""
    rows = np.array(rows, dtype=np.float64)
    rows /= _norms(rows)[..., None]  # in place: a second T x d array costs more than the division
    return rows


def moving_average(frames: np.ndarray, width: int) -> np.ndarray:
    """Mean of ``width`` frames around each frame, zero padded, same length; width 0 or 1 is a no-op.

    The window covers (width-1)//2 frames before and width//2 after, so an even
    width leans one frame forward. An edge window has fewer real frames, but the
    L2 normalisation that follows makes it the mean direction of those frames.
    """
    if width < 0:
        raise ValueError(f"smoothing width must be >= 0, got {width}")
    if width <= 1:
        return frames
    before = (width - 1) // 2
    padded = np.pad(frames, ((before, width - 1 - before), (0, 0)))
    return sum(padded[i : i + len(frames)] for i in range(width)) / width


def affinity(frames: np.ndarray, steps: np.ndarray, *, logit_scale: float, logit_bias: float) -> np.ndarray:
    """A[k, t]: the checkpoint's sigmoid probability that step k matches frame t (K x T)."""
    return candidate_affinities(checked_frames(frames), [steps], lambda i: "steps", logit_scale, logit_bias).matrix


@dataclass(frozen=True, eq=False)
class CheckedFrames:
    """A video's frames as ``check_rows`` gives them, with their row norms (``affinity``'s denominators)."""

    rows: np.ndarray
    norms: np.ndarray


def checked_frames(frames: np.ndarray) -> CheckedFrames:
    """``check_rows(frames, "frames")`` and the frames' norms, for the price of the norms (``row_norms``)."""
    return CheckedFrames(*_rows_and_norms(frames, "frames"))


def align(
    frames: np.ndarray, steps: np.ndarray, *, logit_scale: float, logit_bias: float, smooth: int = 0, mode: str = "global"
) -> Alignment:
    """Align one script with one video."""
    return align_candidates(frames, [steps], logit_scale=logit_scale, logit_bias=logit_bias, smooth=smooth, mode=mode)[0]


def align_candidates(
    frames: np.ndarray,
    candidates: Sequence[np.ndarray],
    *,
    logit_scale: float,
    logit_bias: float,
    smooth: int = 0,
    mode: str = "global",
    labels: Sequence[str] | None = None,
) -> list[Alignment]:
    """Align one video with each candidate's steps in one compiled call.

    ``labels`` name the candidates in error messages (default: "steps of candidate i").
    """
    if not candidates:
        return []
    return align_blocks(_candidate_affinities(frames, candidates, logit_scale, logit_bias, smooth, labels), range(len(candidates)), mode)


def align_many(matrices: Sequence[np.ndarray], mode: str = "global", *, check: bool = True) -> list[Alignment]:
    """Align many affinity matrices (each its own K and T) in one call of the compiled kernel.

    ``check=False`` skips checking each matrix (non-empty, 2-D, finite), for
    matrices known to be so, such as ``affinity``'s.
    """
    if check:
        matrices = [check_rows(m, f"affinity matrix {i}") for i, m in enumerate(matrices)]
    if not matrices:
        return []
    offsets = np.zeros(len(matrices) + 1, dtype=np.int64)
    np.cumsum([m.size for m in matrices], out=offsets[1:])
    frames = np.array([m.shape[1] for m in matrices], dtype=np.int64)
    layout = Layout(offsets, frames, max(sum(m.shape) - 1 for m in matrices), max(m.size for m in matrices))
    flat = np.concatenate([m.ravel() for m in matrices], dtype=np.float64)
    return _alignments(_align_flat(flat, layout, range(len(matrices)), mode), matrices)


class Layout(NamedTuple):
    """Where ``_align_batch`` finds matrix i in a flat array (``offsets[i]:offsets[i + 1]``, ``frames[i]`` columns,
    C order), and the sizes of its outputs and scratch: the longest path and the largest matrix."""

    offsets: np.ndarray
    frames: np.ndarray
    longest: int
    cells: int


@dataclass(frozen=True, eq=False)
class StackedAffinities:
    """The affinities of several candidates' steps with one video, from one matrix product.

    ``matrix`` (sum of K x T, float64, C order) holds candidate i's affinity in rows
    ``bounds[i]:bounds[i + 1]``; aligning any of them reads these rows in place, at
    the places ``layout`` gives (computed once for every scorer that aligns them).
    """

    matrix: np.ndarray
    bounds: np.ndarray
    layout: Layout

    def block(self, i: int) -> np.ndarray:
        return self.matrix[self.bounds[i] : self.bounds[i + 1]]


def _stacked_affinities(matrix: np.ndarray, lengths: Sequence[int]) -> StackedAffinities:
    """``matrix`` as the blocks of candidates of ``lengths`` steps, with their ``Layout``."""
    frames, steps = matrix.shape[1], max(lengths)
    bounds = np.array([0, *accumulate(lengths)])
    return StackedAffinities(matrix, bounds, Layout(bounds * frames, np.full(len(lengths), frames), steps + frames - 1, steps * frames))


def align_blocks(stacked: StackedAffinities, which: Sequence[int], mode: str = "global") -> list[Alignment]:
    """Align the candidates ``which`` of ``stacked`` in one call of the compiled kernel, without copying their matrices."""
    if not len(which):
        return []
    return _alignments(_align_flat(stacked.matrix.reshape(-1), stacked.layout, which, mode), [stacked.block(i) for i in which])


def block_scores(stacked: StackedAffinities, which: Sequence[int], mode: str = "global") -> tuple[list[float], list[int]]:
    """The scores and path lengths of ``align_blocks``, without its ``Alignment`` objects: all the score stage keeps."""
    if not len(which):
        return [], []
    scores, lengths, _ = _align_flat(stacked.matrix.reshape(-1), stacked.layout, which, mode)
    return scores.tolist(), lengths.tolist()


def _align_flat(flat: np.ndarray, layout: Layout, which: Sequence[int], mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, path lengths and paths (``paths[j, :lengths[j]]``) of the matrices ``which`` of ``flat``, in one ``_align_batch`` call."""
    outputs = _outputs(layout, len(which))
    _align_batch(flat, *_kernel_arguments(layout, which, mode), *outputs)
    return outputs[:3]


def _kernel_arguments(layout: Layout, which: Sequence[int], mode: str) -> tuple[Any, ...]:
    """What ``_align_batch`` reads besides the matrices: where they are, which to align, how."""
    return layout.offsets, layout.frames, np.asarray(which, dtype=np.int64), _is_segment(mode), mode == "subsequence"


def _outputs(layout: Layout, count: int) -> tuple[np.ndarray, ...]:
    """What ``_align_batch`` writes for ``count`` matrices: scores, path lengths, paths, then its scratch.

    Allocated here: allocations in the kernel added a quarter to its compile time.
    """
    longest = layout.longest
    return np.empty(count), np.empty(count, dtype=np.int64), np.empty((count, longest, 2), dtype=np.int64), np.empty(layout.cells), np.empty((longest, 2), dtype=np.int64)


def _is_segment(mode: str) -> bool:
    """Whether ``mode`` is ``segment`` (``_moves``'s flag); a ValueError for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"unknown alignment mode {mode!r}; choose from {', '.join(MODES)}")
    return mode == "segment"


def _alignments(aligned: tuple[np.ndarray, np.ndarray, np.ndarray], matrices: Sequence[np.ndarray]) -> list[Alignment]:
    """``Alignment`` objects of ``_align_flat``'s results, ``matrices`` the aligned matrices in order."""
    scores, lengths, paths = aligned
    return [Alignment(score, path[:n], m) for score, n, path, m in zip(scores.tolist(), lengths.tolist(), paths, matrices)]


def candidate_affinities(
    frames: CheckedFrames,
    candidates: Sequence[np.ndarray],
    label: Callable[[int], str],
    logit_scale: float,
    logit_bias: float,
    smooth: int = 0,
    norms: Sequence[np.ndarray] | None = None,
) -> StackedAffinities:
    """The affinity of each candidate's steps with the frames smoothed by ``smooth``: one product and one sigmoid for all.

    The steps are checked as ``check_rows`` would, naming the first bad one by ``label(i)``
    (called only then: a video's candidates are named only when one is bad), with
    finiteness read off the stacked steps' norms (``row_norms`` says why).
    ``norms``: each candidate's ``row_norms`` when the caller keeps them (a class's steps
    serve many videos), so they are neither computed nor checked again.
    """
    dim = frames.rows.shape[1]
    stacked = _stack(candidates, label, dim)
    stacked = stacked.astype(np.result_type(stacked.dtype, np.float32), copy=False)
    step_norms = _norms(stacked) if norms is None else np.concatenate(norms)
    if norms is None and not np.isfinite(step_norms).all():
        _check_each(candidates, label, dim)
    if not (math.isfinite(logit_scale) and math.isfinite(logit_bias)):
        raise AlignmentInputError(f"calibration must be finite, got logit_scale={logit_scale}, logit_bias={logit_bias}")
    smoothed = moving_average(frames.rows, smooth)
    frame_norms = frames.norms if smoothed is frames.rows else _norms(smoothed)
    product = stacked @ smoothed.T
    matrix = np.empty(product.shape)
    _sigmoid_affinity(product, step_norms, frame_norms, -math.exp(logit_scale), logit_bias, matrix, np.empty(product.shape[1]))
    return _stacked_affinities(matrix, [len(s) for s in candidates])


def _stack(candidates: Sequence[np.ndarray], label: Callable[[int], str], dim: int) -> np.ndarray:
    """The candidates' steps in one array, their shapes checked on the result: any bad one (not 2-D,
    empty, another dimension) fails the concatenation or shows in its shape, and only then is each checked."""
    try:
        stacked = np.concatenate(candidates)
    except ValueError:
        _check_each(candidates, label, dim)
        raise
    if stacked.ndim != 2 or stacked.shape[1] != dim or not all(len(s) for s in candidates):
        _check_each(candidates, label, dim)
    return stacked


def _check_each(candidates: Sequence[np.ndarray], label: Callable[[int], str], dim: int) -> None:
    """``check_rows`` on each candidate's steps in order: raises for the first bad one."""
    for i, rows in enumerate(candidates):
        check_rows(rows, label(i), dim)


def _candidate_affinities(frames: np.ndarray, candidates: Sequence[np.ndarray], logit_scale: float, logit_bias: float, smooth: int, labels: Sequence[str] | None) -> StackedAffinities:
    """The affinity matrix of each candidate's steps with one video: one smoothing and one matrix product for all."""
    label = labels.__getitem__ if labels is not None else "steps of candidate {}".format
    return candidate_affinities(checked_frames(frames), candidates, label, logit_scale, logit_bias, smooth)


def row_norms(rows: np.ndarray, what: str) -> np.ndarray:
    """The row norms of ``check_rows(rows, what)`` in its precision (``affinity``'s denominators).

    Raises as ``check_rows`` does (the dimension aside), for the price of the norms:
    a NaN or infinite value makes its row's norm NaN or infinite, so only then does
    ``check_rows`` look at every value (and say how many are bad). Norms that
    overflow from finite values pass, as they always did.
    """
    return _rows_and_norms(rows, what)[1]


def _rows_and_norms(rows: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` as ``check_rows`` returns them and their norms, checked as ``row_norms`` says."""
    array = np.asarray(rows)
    if array.ndim != 2 or 0 in array.shape:
        check_rows(array, what)  # raises, naming the shape
    array = array.astype(np.result_type(array.dtype, np.float32), copy=False)
    norms = _norms(array)
    if not np.isfinite(norms).all():
        check_rows(array, what)
    return array, norms


def _norms(rows: np.ndarray) -> np.ndarray:
    """Row norms, with 1 for a zero row so that dividing by them leaves it zero."""
    norms = np.sqrt(np.einsum("...i,...i->...", rows, rows))
    return np.where(norms == 0.0, 1.0, norms)


# exp by Cody and Waite's reduction, e^z = 2^n e^r with n = round(z / ln 2) and |r| <= ln(2) / 2, and a
# Taylor polynomial for e^r (its first omitted term, r^14 / 14!, is below 2e-18): within an ulp of
# NumPy's, in plain arithmetic that LLVM vectorises where numba's math.exp is a scalar call.
_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 in two parts: n * _LN2_HI is exact
_ROUNDING = 1.5 * 2.0**52  # adding it rounds a float64 of magnitude below 2^51 to an integer, kept in the low bits
_ROUNDING_BITS = 0x4338000000000000  # the bits of _ROUNDING: the sum's bits minus these are that integer
_EXP_OVERFLOWS, _EXP_NEGLIGIBLE = 710.0, -708.0  # e^710 is inf; 1 + e^-708 is exactly 1


@numba.njit(inline="always")
def _exp_reduced(r):
    """e^r for |r| <= ln(2) / 2: Taylor's polynomial of degree 13 by Horner's rule."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r + 1.0


@numba.njit(nogil=True, cache=False)
def _sigmoid_affinity(product, step_norms, frame_norms, negated_kappa, bias, out, scratch):
    """out[k, t] = sigmoid(kappa cos + bias), cos = product[k, t] / (step_norms[k] frame_norms[t]): ``affinity``.

    The product (BLAS's) and the norms keep the embeddings' precision, float32 as
    the towers give and the store keeps them (SigLIP's own logits are float32 too):
    twice as fast as float64, with cosine errors of about 1e-7. Everything after is
    float64: the cosine divides the product by the norms' product (no K x T array
    of norms); the sigmoid is 1 / (1 + exp(-(kappa cos + bias))), 0 where exp overflows.
    Row by row in loops without calls or branches, which LLVM vectorises: the exp
    above (``_exp_reduced``) in place of numba's scalar one, which took twice as
    long, and of NumPy's five passes, which with two score workers in one process
    measured slower (``bench_score_load``); apart from the DP's compiled call, which
    compiled 0.4 s longer per type of product with it. ``scratch``: one row of float64.
    A NaN logit stays NaN (neither bound replaces it).
    """
    powers = scratch.view(np.int64)
    for k in range(product.shape[0]):
        row, norm = out[k], step_norms[k]
        for t in range(product.shape[1]):
            logit = np.float64(product[k, t]) / (norm * frame_norms[t]) * negated_kappa - bias
            logit = _EXP_OVERFLOWS if logit > _EXP_OVERFLOWS else logit
            row[t] = _EXP_NEGLIGIBLE if logit < _EXP_NEGLIGIBLE else logit
        for t in range(len(row)):
            scratch[t] = row[t] * _LOG2E + _ROUNDING  # n, rounded to the nearest integer, in the low bits
        for t in range(len(row)):
            n = scratch[t] - _ROUNDING
            row[t] = _exp_reduced((row[t] - n * _LN2_HI) - n * _LN2_LO)
        for t in range(len(row)):
            powers[t] = (powers[t] - _ROUNDING_BITS + 1022) << 52  # 2^(n - 1): n reaches 1024 at e^710
        for t in range(len(row)):
            row[t] = 1.0 / (1.0 + row[t] * scratch[t] * 2.0)


@numba.njit(inline="always")
def _moves(segment, steps, frames):
    """Which unit moves a mode allows besides the diagonal: (0,+1) "left" and (+1,0) "up".

    Segment mode moves along the longer axis only, so each frame (or, when T < K,
    each step) is used exactly once. Compiled into the kernel; the reference calls
    its Python (``_moves.py_func``).
    """
    return not segment or frames >= steps, not segment or frames < steps


# ---- reference: plain Python, mirroring the equations ----


def reference_align(matrix: np.ndarray, mode: str = "global") -> Alignment:
    """The slow twin of ``align_many`` for one affinity matrix, for tests and benchmarks."""
    matrix = check_rows(matrix, "affinity matrix")
    a = matrix.tolist()
    left, up = _moves.py_func(_is_segment(mode), len(a), len(a[0]))
    path, score = [], -math.inf
    lam, open_ends = 0.0, False  # round 0: the closed path of largest sum
    while True:  # subsequence: Dinkelbach's rounds, lambda = the mean of the last path, while the mean rises
        trial = _reference_path(a, lam, left, up, open_ends)
        mean = _reference_mean(a, trial)
        if mean <= score:
            break
        path, score = trial, mean
        if mode != "subsequence":
            break
        lam, open_ends = mean, True
    return Alignment(score, np.array(path, dtype=np.int64), matrix)


def _reference_path(a: list[list[float]], lam: float, left: bool, up: bool, open_ends: bool) -> list[tuple[int, int]]:
    """The path of largest sum of (a - lam): D[k][t] = (a[k][t] - lam) + max(0 where a path may start, predecessors)."""
    steps, frames = len(a), len(a[0])
    moves = [(0, 1)] * left + [(1, 0)] * up + [(1, 1)]  # predecessor offsets, in tie-break order
    total = [[-math.inf] * frames for _ in range(steps)]  # -inf: no path reaches this cell
    came: dict[tuple[int, int], tuple[int, int] | None] = {}  # None: the path starts here
    for k in range(steps):
        for t in range(frames):
            best = 0.0 if k == 0 and (t == 0 or open_ends) else -math.inf
            origin = None
            for dk, dt in moves:
                if k >= dk and t >= dt and total[k - dk][t - dt] > best:
                    best, origin = total[k - dk][t - dt], (k - dk, t - dt)
            total[k][t] = (a[k][t] - lam) + best
            came[k, t] = origin
    last = steps - 1
    end = max(range(frames), key=lambda t: (total[last][t], t)) if open_ends else frames - 1
    path = [(last, end)]
    while (origin := came[path[-1]]) is not None:
        path.append(origin)
    return path[::-1]


def _reference_mean(a: list[list[float]], path: list[tuple[int, int]]) -> float:
    return sum(a[k][t] for k, t in path) / len(path)


# ---- fast: the same algorithm compiled by numba on first call ----
# The helpers are inlined into the one kernel: compiled one by one, they took over twice as long to compile.

_START, _LEFT, _UP, _DIAG = 0, 1, 2, 3  # where a cell's best path comes from, in tie-break order


@numba.njit(inline="always")
def _fill(a, lam, left, up, open_start, total):
    """Forward pass: the largest sum of (a - lam) over paths into each cell; -inf where no path goes.

    Values only, by max(): they do not depend on how ties are broken, only the
    path does (``_origin``). Branch-free max() runs twice as fast as tracking
    the argmax here. A move the mode forbids adds -inf instead of being tested
    for in every cell, and the first row and column are filled on their own: the
    inner loop has no branch, and one kernel for every mode runs about as fast as
    one compiled for the global mode alone (with the tests in every cell, a quarter slower).
    """
    steps, frames = a.shape
    left_gate = 0.0 if left else -np.inf
    up_gate = 0.0 if up else -np.inf
    start = 0.0 if open_start else -np.inf  # starting a path on row 0 after frame 0
    total[0, 0] = (a[0, 0] - lam) + 0.0
    for t in range(1, frames):
        total[0, t] = (a[0, t] - lam) + max(start, total[0, t - 1] + left_gate)
    for k in range(1, steps):
        total[k, 0] = (a[k, 0] - lam) + (total[k - 1, 0] + up_gate)
        for t in range(1, frames):
            total[k, t] = (a[k, t] - lam) + max(total[k, t - 1] + left_gate, total[k - 1, t] + up_gate, total[k - 1, t - 1])


@numba.njit(inline="always")
def _origin(total, k, t, left, up, open_start):
    """Where the best path into (k, t) comes from: the first maximum in tie-break order."""
    best = 0.0 if k == 0 and (t == 0 or open_start) else -np.inf
    origin = _START
    if left and t > 0 and total[k, t - 1] > best:
        best, origin = total[k, t - 1], _LEFT
    if up and k > 0 and total[k - 1, t] > best:
        best, origin = total[k - 1, t], _UP
    if k > 0 and t > 0 and total[k - 1, t - 1] > best:
        origin = _DIAG
    return origin


@numba.njit(inline="always")
def _best_path(a, lam, left, up, open_ends, total, out):
    """Write the path of largest sum of (a - lam) into ``out``, first cell first; return its length."""
    _fill(a, lam, left, up, open_ends, total)
    k, t = a.shape[0] - 1, a.shape[1] - 1
    if open_ends:
        for frame in range(t - 1, -1, -1):
            if total[k, frame] > total[k, t]:
                t = frame
    n = 0
    while True:
        out[n, 0], out[n, 1] = k, t
        n += 1
        origin = _origin(total, k, t, left, up, open_ends)
        if origin == _START:
            break
        if origin != _UP:
            t -= 1
        if origin != _LEFT:
            k -= 1
    for i in range(n // 2):
        for j in range(2):
            out[i, j], out[n - 1 - i, j] = out[n - 1 - i, j], out[i, j]
    return n


@numba.njit(inline="always")
def _path_mean(a, path, n):
    total = 0.0
    for i in range(n):
        total += a[path[i, 0], path[i, 1]]
    return total / n


@numba.njit(inline="always")
def _align_one(a, left, up, subsequence, total, out, trial):
    """Score and path (written into ``out``) of one matrix: the rounds of ``reference_align``."""
    n, score = 0, -np.inf
    lam, open_ends = 0.0, False  # a variable, not a literal: numba would compile a copy per literal
    while True:
        m = _best_path(a, lam, left, up, open_ends, total, trial)
        mean = _path_mean(a, trial, m)
        if mean <= score:
            break
        for i in range(m):  # a loop: numba compiles slice assignment for seconds
            out[i, 0], out[i, 1] = trial[i, 0], trial[i, 1]
        n, score = m, mean
        if not subsequence:
            break
        lam, open_ends = mean, True
    return score, n


@numba.njit(nogil=True, cache=False)  # no cache files: the package folder may be read-only or shared by workers
def _align_batch(flat, offsets, frames, which, segment, subsequence, scores, lengths, paths, total, trial):
    """Align matrices ``which``: matrix i is flat[offsets[i]:offsets[i + 1]] with frames[i] columns (C order).

    Result j is matrix which[j]'s: its score, its path's length, its path in
    paths[j, :lengths[j]]. ``total`` and ``trial`` are scratch for the largest matrix
    and the longest path (allocated by the caller: array expressions or allocations
    in here add compile time).
    """
    for j in range(len(which)):
        start, end, count = offsets[which[j]], offsets[which[j] + 1], frames[which[j]]
        shape = ((end - start) // count, count)
        left, up = _moves(segment, shape[0], count)
        scores[j], lengths[j] = _align_one(flat[start:end].reshape(shape), left, up, subsequence, total[: end - start].reshape(shape), paths[j], trial)


# ---- Drop-DTW: frames may be dropped at a cost (after Dvornik et al., NeurIPS 2021) ----
#
# Every frame is either matched to one step (it earns A[k, t]) or dropped (it earns the
# drop value b); the matched frames go to the steps in order, every step gets at least one
# frame. ``contiguous`` (the original code's default): a step's frames form one run, no
# frame is dropped between two frames of the same step. The DP, in gains (the original
# minimises costs; gains are costs with the sign flipped):
#
#   P[t]    = t * b                                  (frames 0..t-1 all dropped; a running sum)
#   M[k, t] = A[k, t] + max(C[k, t-1], G[k-1, t-1])  (frame t matched to step k; C = M if
#                                                     contiguous else G; G[-1, t-1] = P[t])
#   G[k, t] = max(M[k, t], G[k, t-1] + b)            (steps 0..k placed, frame t matched or dropped)
#
# The optimum is G[K-1, T-1], and the score is G[K-1, T-1] / T: each frame adds exactly one
# term (its affinity, or b), so the score is a mean over frames, comparable across scripts
# of any length (like ``segment``), and it is exactly the quantity the DP maximises. (The
# mean affinity over matched cells alone would reward dropping all but one frame per step.)
# Ties: a matched frame beats a dropped one, continuing a step beats starting it.
# With T < K no step can have a frame of its own: the ``segment`` rule for T < K applies
# (each step one frame, frames in order, every frame used, no drops, score = sum / K).
#
# By default b is a percentile of the matrix's own affinities, as in the original code
# ("keep_percentile"): b = the affinity exceeded by ``keep_percentile`` % of the cells, i.e.
# the ``keep_percentile``-th percentile of the match costs 1 - A (numpy's linear interpolation).
# ``drops`` gives b explicitly instead (e.g. one fixed affinity for every candidate).

DROP_KEEP_PERCENTILE = 30.0


@dataclass(frozen=True, eq=False)
class DropAlignment(Alignment):
    """A Drop-DTW alignment: ``path`` holds the matched cells only; ``drop`` is the value each dropped frame earned."""

    drop: float = 0.0

    @property
    def dropped(self) -> int:
        """How many frames were dropped."""
        return self.affinity.shape[1] - len(self.path) if self.affinity.shape[1] >= self.affinity.shape[0] else 0


def drop_value(matrix: np.ndarray, keep_percentile: float = DROP_KEEP_PERCENTILE) -> float:
    """The drop value b of one affinity matrix: the affinity exceeded by ``keep_percentile`` % of its cells."""
    if not 0.0 <= keep_percentile <= 100.0:
        raise ValueError(f"keep_percentile must lie in [0, 100], got {keep_percentile}")
    return float(np.percentile(matrix, 100.0 - keep_percentile))


def drop_dtw_candidates(
    frames: np.ndarray,
    candidates: Sequence[np.ndarray],
    *,
    logit_scale: float,
    logit_bias: float,
    smooth: int = 0,
    keep_percentile: float = DROP_KEEP_PERCENTILE,
    drop_affinity: float | None = None,
    contiguous: bool = True,
    labels: Sequence[str] | None = None,
) -> list[DropAlignment]:
    """Drop-DTW of one video with each candidate's steps, on the same affinities as ``align_candidates``.

    The drop value of each candidate is ``drop_affinity`` when given, else its matrix's ``drop_value``.
    """
    if not candidates:
        return []
    stacked = _candidate_affinities(frames, candidates, logit_scale, logit_bias, smooth, labels)
    return drop_dtw_blocks(stacked, range(len(candidates)), keep_percentile, drop_affinity, contiguous)


def drop_dtw_blocks(
    stacked: StackedAffinities, which: Sequence[int], keep_percentile: float = DROP_KEEP_PERCENTILE, drop_affinity: float | None = None, contiguous: bool = True
) -> list[DropAlignment]:
    """Drop-DTW of the candidates ``which`` of ``stacked`` (``drop_dtw_candidates`` on affinities already computed)."""
    matrices = [stacked.block(i) for i in which]
    drops = None if drop_affinity is None else [drop_affinity] * len(matrices)
    return drop_dtw_many(matrices, keep_percentile, drops=drops, contiguous=contiguous, check=False)


def drop_dtw_many(
    matrices: Sequence[np.ndarray],
    keep_percentile: float = DROP_KEEP_PERCENTILE,
    *,
    drops: Sequence[float] | None = None,
    contiguous: bool = True,
    check: bool = True,
) -> list[DropAlignment]:
    """Drop-DTW of many affinity matrices in one compiled call; ``drops`` overrides the percentile rule."""
    if check:
        matrices = [check_rows(m, f"affinity matrix {i}") for i, m in enumerate(matrices)]
    if not matrices:
        return []
    if drops is None:
        drops = [drop_value(m, keep_percentile) for m in matrices]
    drops = np.asarray(drops, dtype=np.float64)
    if drops.shape != (len(matrices),) or not np.isfinite(drops).all():
        raise AlignmentInputError(f"drops: expected {len(matrices)} finite values, got {drops}")
    steps = np.array([m.shape[0] for m in matrices], dtype=np.int64)
    frames = np.array([m.shape[1] for m in matrices], dtype=np.int64)
    short = frames < steps  # the segment rule: no frame of its own for every step
    results: list[DropAlignment | None] = [None] * len(matrices)
    for i, a in zip(np.flatnonzero(short), align_many([matrices[i] for i in np.flatnonzero(short)], "segment", check=False)):
        results[i] = DropAlignment(a.score, a.path, a.affinity, float(drops[i]))
    keep = np.flatnonzero(~short)
    if len(keep):
        starts = np.concatenate(([0], np.cumsum(steps[keep] * frames[keep])))
        path_starts = np.concatenate(([0], np.cumsum(frames[keep])))  # at most one matched cell per frame
        scores = np.empty(len(keep))
        lengths = np.empty(len(keep), dtype=np.int64)
        paths = np.empty((path_starts[-1], 2), dtype=np.int64)
        cells = (steps[keep] * frames[keep]).max()
        flat = np.concatenate([matrices[i].ravel() for i in keep], dtype=np.float64)
        _drop_batch(flat, starts, steps[keep], frames[keep], drops[keep], contiguous, scores, lengths, path_starts, paths, np.empty(cells), np.empty(cells))
        for j, i in enumerate(keep):
            path = paths[path_starts[j] : path_starts[j] + lengths[j]]
            results[i] = DropAlignment(float(scores[j]), path, matrices[i], float(drops[i]))
    return results  # type: ignore[return-value]


def reference_drop_dtw(matrix: np.ndarray, drop: float, contiguous: bool = True) -> DropAlignment:
    """The slow twin of ``drop_dtw_many`` for one matrix and one drop value b, in plain Python."""
    matrix = check_rows(matrix, "affinity matrix")
    if matrix.shape[1] < matrix.shape[0]:
        a = reference_align(matrix, "segment")
        return DropAlignment(a.score, a.path, matrix, float(drop))
    a, b = matrix.tolist(), float(drop)
    steps, frames = len(a), len(a[0])
    prefix = [0.0]  # prefix[t]: frames 0..t-1 all dropped
    for _ in range(frames):
        prefix.append(prefix[-1] + b)
    matched = [[-math.inf] * frames for _ in range(steps)]  # M
    placed = [[-math.inf] * frames for _ in range(steps)]  # G
    for k in range(steps):
        for t in range(frames):
            previous = (matched if contiguous else placed)[k][t - 1] if t > 0 else -math.inf
            start = (prefix[t] if k == 0 else placed[k - 1][t - 1] if t > 0 else -math.inf)
            matched[k][t] = a[k][t] + max(previous, start)
            placed[k][t] = max(matched[k][t], placed[k][t - 1] + b if t > 0 else -math.inf)
    path, k, t, in_match = [], steps - 1, frames - 1, False
    while k >= 0 and t >= 0:
        if not in_match:  # state G: was frame t matched or dropped?
            if matched[k][t] >= (placed[k][t - 1] + b if t > 0 else -math.inf):
                in_match = True
            else:
                t -= 1
            continue
        path.append((k, t))  # state M: frame t matched to step k; where did the path come from?
        previous = (matched if contiguous else placed)[k][t - 1] if t > 0 else -math.inf
        start = (prefix[t] if k == 0 else placed[k - 1][t - 1] if t > 0 else -math.inf)
        if previous < start:
            k -= 1
        in_match = previous >= start and contiguous
        t -= 1
    return DropAlignment(placed[steps - 1][frames - 1] / frames, np.array(path[::-1], dtype=np.int64).reshape(-1, 2), matrix, b)


@numba.njit(nogil=True, cache=False)
def _drop_batch(flat, starts, steps, frames, drops, contiguous, scores, lengths, path_starts, paths, matched, placed):
    """Drop-DTW of matrix i = flat[starts[i]:starts[i+1]] (steps[i] x frames[i], frames >= steps) with drop value drops[i].

    Follows ``reference_drop_dtw`` operation by operation (same sums in the same order, same
    comparisons), so scores and paths agree exactly. ``matched`` and ``placed`` are scratch
    tables for the largest matrix. The tests for a match's predecessor are written out in both
    passes on purpose: moved into an inlined helper, they made this kernel 1.2 to 4 times slower.
    """
    for i in range(len(steps)):
        K, T, b = steps[i], frames[i], drops[i]
        a = flat[starts[i] : starts[i + 1]].reshape((K, T))
        m = matched[: K * T].reshape((K, T))
        g = placed[: K * T].reshape((K, T))
        for k in range(K):
            prefix = 0.0
            for t in range(T):
                if t == 0:
                    previous = -np.inf
                elif contiguous:
                    previous = m[k, t - 1]
                else:
                    previous = g[k, t - 1]
                if k == 0:
                    start = prefix
                elif t > 0:
                    start = g[k - 1, t - 1]
                else:
                    start = -np.inf
                m[k, t] = a[k, t] + max(previous, start)
                g[k, t] = max(m[k, t], g[k, t - 1] + b if t > 0 else -np.inf)
                prefix += b
        scores[i] = g[K - 1, T - 1] / T
        out = paths[path_starts[i] :]
        n, k, t, in_match = 0, K - 1, T - 1, False
        while k >= 0 and t >= 0:
            if not in_match:
                if m[k, t] >= (g[k, t - 1] + b if t > 0 else -np.inf):
                    in_match = True
                else:
                    t -= 1
                continue
            out[n, 0], out[n, 1] = k, t
            n += 1
            if t == 0:
                previous = -np.inf
            elif contiguous:
                previous = m[k, t - 1]
            else:
                previous = g[k, t - 1]
            if k == 0:
                start = t * 0.0
                for _ in range(t):
                    start += b
            elif t > 0:
                start = g[k - 1, t - 1]
            else:
                start = -np.inf
            if previous < start:
                k -= 1
            in_match = previous >= start and contiguous
            t -= 1
        for j in range(n // 2):
            for c in range(2):
                out[j, c], out[n - 1 - j, c] = out[n - 1 - j, c], out[j, c]
        lengths[i] = n
