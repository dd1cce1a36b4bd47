"""Alignment speed: the reference and the compiled DP, and an ActionAtlas-sized scoring workload.

Run ``.venv/bin/python -m benchmarks.bench_align [--quick]``. Single-threaded:
the BLAS, OpenMP and numba thread counts are set to 1 before NumPy loads.
Embeddings are random; the DP's cost does not depend on their values.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from actalign.align import MODES, align_many, reference_align  # noqa: E402
from actalign.scorers import SCORERS, Calibration, ClassTexts, make_scorer  # noqa: E402

VIDEOS, CANDIDATES, FRAMES, STEPS, DIM = 934, 5, 195, 12, 1152  # ActionAtlas: 934 clips, 4-5 candidates
SIGLIP = Calibration(logit_scale=float(np.log(117.3)), logit_bias=-12.9)  # about so400m's own values
TARGET_CELLS_PER_S, TARGET_RATIO = 100e6, 200


def seconds(work: Callable[[], object], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` runs."""
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def random_affinities(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.uniform(0.001, 0.999, (STEPS, FRAMES)) for _ in range(count)]


def dp_throughput(quick: bool, rng: np.random.Generator) -> None:
    """Cells per second of both implementations, per mode; cells = K x T per alignment."""
    reference_pairs, fast_pairs = (3, 500) if quick else (20, VIDEOS * CANDIDATES)
    matrices = random_affinities(fast_pairs, rng)
    cells = STEPS * FRAMES
    print(f"\nDP throughput, K={STEPS} x T={FRAMES}, uniform random affinities")
    print(f"reference_align: {reference_pairs} matrices one by one; align_many: {fast_pairs} in one call,")
    print("with its checks of each matrix (public default) and without (check=False, the scorers' path)")
    print(f"{'mode':<12} {'reference':>10} {'checked':>10} {'unchecked':>10} {'ratio':>7}   (M cells/s; ratio = unchecked / reference)")
    for mode in MODES:
        reference_align(matrices[0], mode)  # warm-up
        slow = reference_pairs * cells / seconds(lambda: [reference_align(m, mode) for m in matrices[:reference_pairs]], repeats=2)
        checked = fast_pairs * cells / seconds(lambda: align_many(matrices, mode), repeats=3)
        unchecked = fast_pairs * cells / seconds(lambda: align_many(matrices, mode, check=False), repeats=3)
        print(f"{mode:<12} {slow / 1e6:>10.2f} {checked / 1e6:>10.1f} {unchecked / 1e6:>10.1f} {unchecked / slow:>6.0f}x")
    print("(subsequence runs several DP passes per alignment, Dinkelbach's method; its cells count once)")


def workload(quick: bool, rng: np.random.Generator) -> None:
    """Every scorer on VIDEOS videos x CANDIDATES candidates through ``score_many``, one video at a time."""
    videos = 100 if quick else VIDEOS
    frame_pool = [rng.standard_normal((FRAMES, DIM)).astype(np.float32) for _ in range(16)]  # float32, as stored
    classes = [
        ClassTexts(f"class-{i}", rng.standard_normal((STEPS, DIM)).astype(np.float32), rng.standard_normal(DIM).astype(np.float32))
        for i in range(64)
    ]
    shards = [
        (frame_pool[v % len(frame_pool)], [classes[(CANDIDATES * v + j) % len(classes)] for j in range(CANDIDATES)]) for v in range(videos)
    ]
    print(f"\nWorkload: {videos} videos x {CANDIDATES} candidates, T={FRAMES}, K={STEPS}, d={DIM}, float32 embeddings, affinities included")
    for name in (n for n, spec in SCORERS.items() if not spec.texts):  # bench_scorers times the others
        scorer = make_scorer(name)
        scorer.score_many(*shards[0], SIGLIP)  # warm-up
        elapsed = seconds(lambda: [scorer.score_many(frames, candidates, SIGLIP) for frames, candidates in shards])
        print(f"{name:<22} {elapsed:6.3f} s  ({elapsed / videos * 1e3:.2f} ms per video)")
    smoothed = make_scorer("actalign", smoothing=5)
    elapsed = seconds(lambda: [smoothed.score_many(frames, candidates, SIGLIP) for frames, candidates in shards])
    print(f"{'actalign, smoothing 5':<22} {elapsed:6.3f} s")
    matmul = seconds(lambda: [np.concatenate([c.steps for c in cs]) @ f.T for f, cs in shards])
    print(f"{'(the matrix products)':<22} {matmul:6.3f} s  (float32 step x frame products alone: the floor)")
    scorer = make_scorer("actalign")
    drift = max(
        abs(single.score - double.score)
        for frames, candidates in shards[:50]
        for single, double in zip(
            scorer.score_many(frames, candidates, SIGLIP), scorer.score_many(frames.astype(np.float64), candidates, SIGLIP)
        )
    )
    print(f"largest |actalign score, float32 - float64 product| over 50 videos: {drift:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, a few seconds")
    quick = parser.parse_args().quick
    print(f"numba {numba.__version__}, numpy {np.__version__}, {os.cpu_count()} cores visible; BLAS/OpenMP/numba threads = 1")
    compile_s = seconds(lambda: align_many([np.ones((2, 3))]))
    print(f"first call of the compiled kernel (numba compile, once per process): {compile_s:.2f} s")
    rng = np.random.default_rng(0)
    dp_throughput(quick, rng)
    workload(quick, rng)
    print(f"\ntargets (fast path, one core): >= {TARGET_CELLS_PER_S / 1e6:.0f} M cells/s, >= {TARGET_RATIO}x the reference, workload well under 1 s")


if __name__ == "__main__":
    main()
