"""Every scorer on the generated embedding proxies (accuracy), and its speed on an ActionAtlas-sized workload.

Run ``.venv/bin/python -m benchmarks.bench_scorers [--trials 400] [--seed 0] [--quick]``.
The proxies are described in ``benchmarks.proxies``; the table is seeded, so a run
repeats exactly. Single-threaded: the BLAS, OpenMP and numba thread counts are set
to 1 before NumPy loads.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from actalign.align import drop_dtw_many, drop_value, reference_drop_dtw  # noqa: E402
from actalign.scorers import SCORER_NAMES, Calibration, ClassTexts, make_scorer  # noqa: E402
from benchmarks.proxies import CANDIDATES, PROXIES, accuracy, make_trials  # noqa: E402

VIDEOS, FRAMES, STEPS, ATTRIBUTES, SUBTEXTS, DIM = 934, 195, 12, 8, 4, 1152  # ActionAtlas-sized
SIGLIP = Calibration(logit_scale=float(np.log(117.3)), logit_bias=-12.9)  # about so400m's own values


def proxy_table(trials: int, seed: int) -> None:
    sets = {proxy: make_trials(proxy, trials, seed=seed + i) for i, proxy in enumerate(PROXIES)}
    chance = 1 / CANDIDATES
    half_width = 1.96 * math.sqrt(0.25 / trials)
    print(f"\nTop-1 accuracy on the proxies: {trials} trials each, {CANDIDATES} candidates (chance {chance:.2f}), seed {seed}")
    print(f"(95 % interval of one accuracy: at most +-{half_width:.3f}; a tie with the true candidate counts as a miss)\n")
    header = f"| {'scorer':<29}|" + "".join(f" {proxy:>12} |" for proxy in PROXIES) + " background - order-only |"
    print(header)
    print("|" + "-" * 30 + "|" + "".join("-" * 14 + "|" for _ in PROXIES) + "-" * 25 + "|")
    for name in SCORER_NAMES:
        scorer = make_scorer(name)
        row = {proxy: accuracy(scorer, sets[proxy]) for proxy in PROXIES}
        drift = row["background"] - row["order-only"]
        print(f"| {name:<29}|" + "".join(f" {row[proxy]:>12.3f} |" for proxy in PROXIES) + f" {drift:>+23.3f} |")


def workload(videos: int, rng: np.random.Generator) -> None:
    """Every scorer through ``score_many``, one video at a time, float32 embeddings as stored."""
    frame_pool = [rng.standard_normal((FRAMES, DIM)).astype(np.float32) for _ in range(16)]
    classes = [
        ClassTexts(
            f"class-{i}",
            rng.standard_normal((STEPS, DIM)).astype(np.float32),
            rng.standard_normal(DIM).astype(np.float32),
            attributes=rng.standard_normal((ATTRIBUTES, DIM)).astype(np.float32),
            subtexts=rng.standard_normal((SUBTEXTS, DIM)).astype(np.float32),
        )
        for i in range(64)
    ]
    shards = [(frame_pool[v % 16], [classes[(CANDIDATES * v + j) % 64] for j in range(CANDIDATES)]) for v in range(videos)]
    print(f"\nSpeed: {videos} videos x {CANDIDATES} candidates, T={FRAMES}, K={STEPS}, J={ATTRIBUTES}, M={SUBTEXTS}, d={DIM}, one thread")
    for name in SCORER_NAMES:
        scorer = make_scorer(name)
        scorer.score_many(*shards[0], SIGLIP)  # warm-up (numba compiles once per process)
        started = time.perf_counter()
        for frames, candidates in shards:
            scorer.score_many(frames, candidates, SIGLIP)
        elapsed = time.perf_counter() - started
        print(f"  {name:<29} {elapsed:6.2f} s  ({elapsed / videos * 1e3:6.2f} ms per video)")


def drop_dtw_speed(rng: np.random.Generator) -> None:
    matrices = [rng.uniform(0.001, 0.999, (STEPS, FRAMES)) for _ in range(500)]
    drops = [drop_value(m) for m in matrices]
    started = time.perf_counter()
    for m, b in zip(matrices[:10], drops[:10]):
        reference_drop_dtw(m, b)
    slow = 10 * STEPS * FRAMES / (time.perf_counter() - started)
    started = time.perf_counter()
    drop_dtw_many(matrices, drops=drops, check=False)
    fast = 500 * STEPS * FRAMES / (time.perf_counter() - started)
    print(f"\nDrop-DTW DP, K={STEPS} x T={FRAMES}: reference {slow / 1e6:.2f} M cells/s, compiled {fast / 1e6:.1f} M cells/s ({fast / slow:.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400, help="trials per proxy (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 trials and 50 videos: a few seconds")
    args = parser.parse_args()
    drop_dtw_many([np.ones((2, 3))])  # compile before anything is timed
    proxy_table(100 if args.quick else args.trials, args.seed)
    rng = np.random.default_rng(args.seed)
    drop_dtw_speed(rng)
    workload(50 if args.quick else 200, rng)


if __name__ == "__main__":
    main()
