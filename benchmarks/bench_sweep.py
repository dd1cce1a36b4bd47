"""A sweep versus its arms run one after another, in the same workdir and in fresh workdirs.

    python -m benchmarks.bench_sweep [--videos 12] [--llm] [--json out.json]

The grid: 2 texts x 2 smoothing widths x 2 scorers = 8 arms over generated demo videos with the tiny
untrained model. The text axis is ``step_template`` (two ways of writing the encoded step text; the
hand-written scripts of the demo) or, with ``--llm``, ``prompts.steps`` (context-rich, short-fixed)
with an OpenAI-compatible loopback server (tests/llm_server.py) writing the scripts.

Three wall times, measured in this order in one process after a warm-up sweep of 6 videos on its own workdir
(Prefect's temporary server start, first-flow costs and the model load are in none of them):

1. **sweep**: ``run_sweep`` on a fresh workdir (one lock, 8 nested pipeline runs, the sweep report);
2. **same workdir**: the 8 arms' configurations through ``run_pipeline`` one after another on one
   fresh workdir, which computes the same distinct work (the store is shared) plus 8 runs' overheads;
3. **fresh workdirs**: each arm on a workdir of its own, which computes every arm's work in full.

With ``--repeat N`` the first two are measured N times each, alternating which goes first, and the
fastest of each is used (all times are in the JSON).

Ratios, printed and never asserted: sweep / same workdir (goal <= 1.2: the sweep costs at most the
union of its distinct work, as the sequential runs in one workdir compute it, plus 20 %) and
sweep / fresh workdirs. Stage counters (frames decoded and encoded, LLM requests, texts encoded,
pairs scored) are summed over the arms of each. Scores and accuracy are meaningless (untrained model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_pipeline import make_videos, prepare_environment

COUNTERS = ("decoded_frames", "encoded_frames", "llm_requests", "encoded_texts", "scored_pairs", "reused_pairs")


def grid_spec(manifest: Path, classes: Path, workdir: Path, llm_url: str | None) -> dict[str, Any]:
    base: dict[str, Any] = {"videos": str(manifest), "classes": str(classes), "workdir": str(workdir), "model": "tiny-random"}
    if llm_url:
        base.update(provider="openai", llm={"base_url": llm_url, "granularity": "class", "requests_per_minute": None})
        texts = {"prompts.steps": ["context-rich", "short-fixed"]}
    else:
        texts = {"step_template": ["{step} in {domain}", "{step}"]}
    return {"base": base, "axes": {**texts, "smoothing": [0, 3], "scorers": ["actalign", "mean-pool"]}}


def _stepless(classes: Path, folder: Path) -> Path:
    """The demo's classes without hand-written texts: the LLM writes every script."""
    from actalign.demo_data import without_texts

    return without_texts(classes, folder / "classes-stepless.yaml")


def _totals(summaries: list[Any]) -> dict[str, int]:
    return {name: sum(getattr(s, name) for s in summaries) for name in COUNTERS}


def _measure(args: argparse.Namespace, scratch: Path, llm_url: str | None) -> dict[str, Any]:
    from actalign.flows.pipeline import run_pipeline
    from actalign.flows.sweep import run_sweep
    from actalign.sweep.grid import read_grid

    manifest, warmup, classes = make_videos(scratch / "videos", args.videos, 6)
    if llm_url:
        classes = _stepless(classes, scratch)

    def grid_at(name: str, videos: Path = manifest) -> Path:
        path = scratch / f"{name}.yaml"
        path.write_text(yaml.safe_dump(grid_spec(videos, classes, scratch / name, llm_url)))
        return path

    run_sweep(grid_at("warmup", warmup))  # Prefect's server and first-flow costs, the model load, every scorer's JIT

    sweep_times: list[float] = []
    same_times: list[float] = []

    def timed_sweep(repeat: int) -> Any:
        started = time.perf_counter()
        result = run_sweep(grid_at(f"sweep-{repeat}"))
        sweep_times.append(time.perf_counter() - started)
        return result

    def timed_same(repeat: int) -> tuple[Any, list[Any]]:
        grid = read_grid(grid_at(f"same-{repeat}"))
        started = time.perf_counter()
        runs = [run_pipeline(arm.config) for arm in grid.arms]
        same_times.append(time.perf_counter() - started)
        return grid, runs

    for repeat in range(args.repeat):  # alternating which goes first, so neither always runs on a colder machine
        if repeat % 2 == 0:
            swept, (same, same_runs) = timed_sweep(repeat), timed_same(repeat)
        else:
            (same, same_runs), swept = timed_same(repeat), timed_sweep(repeat)
    sweep_s, same_s = min(sweep_times), min(same_times)

    fresh_s, fresh_runs = 0.0, []
    for number, arm in enumerate(read_grid(grid_at("fresh")).arms):
        config = arm.config.model_copy(update={"workdir": scratch / f"fresh-{number}"})
        started = time.perf_counter()
        fresh_runs.append(run_pipeline(config))
        fresh_s += time.perf_counter() - started

    results = {
        "videos": args.videos, "arms": len(same.arms), "llm": bool(llm_url),
        "wall_s": {"sweep": sweep_s, "same_workdir": same_s, "fresh_workdirs": fresh_s},
        "all_wall_s": {"sweep": sweep_times, "same_workdir": same_times},
        "ratios": {"sweep_over_same_workdir": sweep_s / same_s, "sweep_over_fresh_workdirs": sweep_s / fresh_s},
        "counters": {"sweep": _totals([a.summary for a in swept.arms if a.summary]), "same_workdir": _totals(same_runs),
                     "fresh_workdirs": _totals(fresh_runs)},
        "states": sorted({a.state for a in swept.arms} | {r.state for r in same_runs + fresh_runs}),
    }
    print(f"{args.videos} videos, {len(same.arms)} arms ({'LLM scripts' if llm_url else 'hand-written scripts'}); tiny-random: UNTRAINED MODEL, speeds only")
    for name, seconds in results["wall_s"].items():
        print(f"  {name:<15} {seconds:7.2f} s   {results['counters'][name]}")
    print(f"  sweep / same workdir    {results['ratios']['sweep_over_same_workdir']:.2f} (goal <= 1.2)")
    print(f"  sweep / fresh workdirs  {results['ratios']['sweep_over_fresh_workdirs']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12, help="generated videos (default 12)")
    parser.add_argument("--llm", action="store_true", help="vary prompts.steps with a loopback LLM server instead of step_template")
    parser.add_argument("--repeat", type=int, default=1, help="measure the sweep and the same-workdir runs this many times, alternating "
                        "which goes first, each on fresh workdirs; the ratios use the fastest of each (default 1)")
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    args = parser.parse_args(argv)
    if args.videos < 1 or args.repeat < 1:
        parser.error("--videos and --repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        before = set(os.environ)
        prepare_environment(Path(scratch))
        try:
            if not args.llm:
                return _measure(args, Path(scratch), None)
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from llm_server import LLMServer, Reply, answer, candidates_of

            def ten_short_steps(call: Any) -> Reply:  # what short-fixed demands, within context-rich's range
                return Reply(answer([{"index": i, "action": a, "steps": [f"shape {i} phase {n}" for n in range(1, 11)]}
                                     for i, a in enumerate(candidates_of(call), start=1)]))

            os.environ.setdefault("OPENAI_API_KEY", "sk-loopback-benchmark")
            with LLMServer(ten_short_steps) as server:
                return _measure(args, Path(scratch), server.base_url)
        finally:
            for name in set(os.environ) - before:
                del os.environ[name]


if __name__ == "__main__":
    main()
