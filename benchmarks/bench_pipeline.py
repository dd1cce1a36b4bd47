"""Pipeline overhead: the whole Prefect flow versus the pure stage functions in a plain loop, and a re-run.

    python -m benchmarks.bench_pipeline [--videos 200] [--workers 2] [--shard-size 16] [--json out.json]

Inputs: generated demo videos (``actalign.demo_data``: 3 s, 128x128, 12 fps, 6
classes that differ only in the order of three shapes; balanced over the
classes when the count is not a multiple of 6), every class a candidate of
every video, the tiny untrained model (``tiny-random``), 4 fps. Generation is
not timed.

Two ratios, both measured in the same process run, printed, never asserted:

1. **pipeline / plain** (goal <= 1.3: orchestration and storage add at most 30 %):
   the wall time of ``actalign.flows.pipeline.run_pipeline`` on a fresh workdir (the
   Prefect flow and its tasks, Parquet stores, status rows, views, report)
   versus the same work done by the pure functions in a plain loop, in one
   thread, with no Prefect and no store: read the inputs; encode every class
   text once (``embed_texts``); for each video, decode and sample
   (``iter_sampled_frames``), encode (``Encoder.embed_images``) and score every
   candidate with each scorer (``score_many``). The frames of a shard's videos
   are encoded together, so the forward passes are the acquire stage's
   batches (which span the videos of its shard); ``--plain-batching video``
   encodes each video alone (more, smaller passes: slower, a weaker baseline).
   The plain loop runs once before the flow runs and once after them; the
   ratio uses their mean.
2. **re-run / cold** (goal <= 0.15): the same configuration on the same workdir
   again, which decodes, encodes and scores nothing.

Fixed costs are timed apart and are in neither ratio: imports, the start of
Prefect's temporary server (once, for every flow run of the benchmark; or none
with ``--server configured``, when the caller has set one up), loading the
model, a warm-up plain loop (the scorers' numba JIT) and a warm-up flow run on
its own workdir (Prefect's first-flow costs in a process). A CLI re-run in a
new process pays the server start and the model load again on top of the
re-run time measured here.

Breakdown: simple timers wrapped around the stage functions that the flow's
tasks call (module attributes patched for the benchmark only), in seconds
summed over threads, plus "Prefect and waiting": the flow's wall time when none
of our stage code was running. Also the status rows' ``seconds`` per stage,
and the peak RSS of each phase (VmHWM, reset before each phase where Linux
allows it; ``getrusage`` max RSS of the whole process at the end).

Both sides run in one process with the same torch settings. On a loaded
machine, 2-thread forward passes stall whenever one of the threads is
descheduled; the plain loop, which alternates decoding and encoding in one
thread, suffers most (its encode time varies up to tenfold from run to run).
``--torch-threads 1`` takes that out for the tiny model; measure on a quiet
machine for the real figures.

``--no-heartbeats`` turns Prefect's flow-run heartbeats off: their thread
sleeps in 1 s steps and is joined when a flow run ends, which adds up to 1 s
to every flow run (about 1 s to a short one).

The model is untrained: speeds are real, scores and accuracy are meaningless.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

# Stage functions timed inside the flow: (module, attribute, label, parent); a stage is timed where its Prefect
# task calls it (actalign.tasks.prefect_tasks). parent None: top-level work, what the
# flow or a task body runs. A nested one counts under the top-level work running in its thread (the declared parent
# when none is). Attributes that are gone from the code are reported, not fatal.
TIMED = [
    ("actalign.flows.pipeline", "load_inputs", "inputs (manifest, classes)", None),
    ("actalign.flows.pipeline", "mark_interrupted", "interrupted-run check (all run records)", None),
    ("actalign.flows.pipeline", "write_run", "run record", None),
    ("actalign.flows.pipeline", "write_videos", "videos table", None),
    ("actalign.flows.pipeline", "plan_run", "freshness plan", None),
    ("actalign.storage.freshness", "FreshnessPlan.write", "freshness plan: write", None),
    ("actalign.flows.pipeline", "write_status", "status rows (flow)", None),
    ("actalign.tasks.prefect_tasks", "write_scripts_task.fn", "scripts", None),
    ("actalign.tasks.prefect_tasks", "encode_texts_task.fn", "texts", None),
    ("actalign.tasks.prefect_tasks", "acquire_shard.fn", "acquire", None),
    ("actalign.tasks.prefect_tasks", "acquire_settled.fn", "acquire", None),
    ("actalign.tasks.prefect_tasks", "score_shard.fn", "score", None),
    ("actalign.tasks.prefect_tasks", "score_settled.fn", "score", None),
    ("actalign.flows.pipeline", "refresh_views", "views (DuckDB)", None),
    ("actalign.tasks.prefect_tasks", "build_report", "report: queries and tables", None),
    ("actalign.tasks.prefect_tasks", "write_files", "report: report.md", None),
    ("actalign.tasks.prefect_tasks", "publish_artifacts", "report: Prefect artifacts", None),
    # nested
    ("actalign.download.sources", "file_fingerprint", "file fingerprint (hash the video)", "acquire"),
    ("actalign.tasks.acquire", "check", "integrity check (Parquet footer)", "acquire"),
    ("actalign.storage.freshness", "inspect", "integrity check (Parquet footer)", "freshness plan"),
    ("actalign.storage.freshness", "_cached_pairs", "read pair-score cache", "freshness plan"),
    ("actalign.tasks.acquire", "write_frame_embeddings", "write frame embeddings", "acquire"),
    ("actalign.tasks.score", "check", "integrity check (Parquet footer)", "score"),
    ("actalign.tasks.score", "read_pair_scores", "read pair-score cache", "score"),
    ("actalign.tasks.score", "read_frame_embeddings", "read frame embeddings", "score"),
    ("actalign.tasks.score", "class_texts", "read text embeddings", "score"),
    ("actalign.tasks.score", "write_pair_scores", "write pair-score cache", "score"),
    ("actalign.tasks.score", "write_atomic", "write score rows", "score"),
    ("actalign.tasks.scripts", "write_status", "status rows", "scripts"),
    ("actalign.tasks.texts", "write_status", "status rows", "texts"),
    ("actalign.tasks.acquire", "write_status", "status rows", "acquire"),
    ("actalign.tasks.score", "write_status", "status rows", "score"),
]
# Spans that contain work and Prefect's own steps: (module, attribute, label); not part of the work union.
MARKERS = [
    ("actalign.flows.pipeline", "_run_stages", "flow body: stages"),
    ("actalign.flows.pipeline", "write_report_task", "report task, as the flow calls it"),
]
REST = {
    "acquire": "decode + encode stream, keys",
    "score": "scoring, keys",
    "scripts": "keys",
    "texts": "encoding, text cache",
    "freshness plan": "keys, previous plan",
}
GOALS = {"pipeline_over_plain": 1.3, "rerun_over_cold": 0.15}  # issue 19, for the tiny model
MODEL_GOALS = {"base-random": {"pipeline_over_plain": 1.0}}  # a model of realistic size: decoding overlaps encoding
SCORING = ("scoring (score_many)", "score")  # scorers built by actalign.tasks.score.make_scorer are wrapped


# --- environment and inputs -------------------------------------------------------------


def prepare_environment(scratch: Path) -> None:
    """As tests/conftest.py and the CLI: offline hub, no telemetry, a private Prefect home and model cache.
    Must run before Prefect or transformers are imported; what the caller has set is kept."""
    for name, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "WARNING",  # the CLI's default without --verbose
        "PREFECT_HOME": str(scratch / "prefect"),
        "ACTALIGN_CACHE": str(scratch / "cache"),
    }.items():
        os.environ.setdefault(name, value)


def make_videos(folder: Path, n_videos: int, warmup_videos: int) -> tuple[Path, Path, Path]:
    """The demo dataset trimmed to ``n_videos`` balanced over the 6 classes; returns (manifest, warm-up manifest, classes).
    The warm-up manifest lists the first ``warmup_videos`` of the set (one per class first)."""
    from actalign.demo_data import DEMO_EVENTS, make_demo_dataset

    n_classes = math.factorial(len(DEMO_EVENTS))
    per_class = max(1, math.ceil(n_videos / n_classes))
    manifest, classes = make_demo_dataset(folder, videos_per_class=per_class)
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # demo numbering: class_index * per_class + k; take k = 0 of every class, then k = 1, ...
    balanced = sorted(range(len(rows)), key=lambda i: (i % per_class, i // per_class))
    chosen = sorted(balanced[:n_videos])
    _write_manifest(manifest, [rows[i] for i in chosen])
    warmup = folder / "warmup.csv"
    _write_manifest(warmup, [rows[i] for i in balanced[: max(1, warmup_videos)]])
    return manifest, warmup, classes


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# --- measuring --------------------------------------------------------------------------


def peak_rss_mb() -> float:
    from benchmarks.bench_encode import peak_rss_mb as vm_hwm

    return vm_hwm()


def reset_peak_rss() -> bool:
    from benchmarks.bench_encode import reset_peak_rss as reset

    return reset()


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_s() -> float:
    """CPU seconds of this process's live descendants (the Prefect server that the harness starts), from /proc; 0 elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent, cpu = {}, {}
    try:
        entries = [e for e in Path("/proc").iterdir() if e.name.isdigit()]
    except OSError:
        return 0.0
    for entry in entries:
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ... utime(11) stime(12)
        parent[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    ours, total = {os.getpid()}, 0.0
    for _ in range(8):  # a few levels of descendants
        found = {pid for pid, ppid in parent.items() if ppid in ours and pid not in ours}
        if not found:
            break
        total += sum(cpu[pid] for pid in found)
        ours |= found
    return total


def measured(phase: Any, *args: Any) -> dict[str, Any]:
    """Run one phase; add its peak RSS (reset before, where Linux allows it) and its CPU seconds."""
    reset_peak_rss()
    cpu, children = own_cpu_s(), children_cpu_s()
    result = phase(*args)
    result["cpu_s"] = own_cpu_s() - cpu
    result["children_cpu_s"] = children_cpu_s() - children
    result["peak_rss_mb"] = peak_rss_mb()
    return result


class StageTimers:
    """Wraps stage functions where the flow's code looks them up and records (label, start, end) spans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[tuple[str, float, float]] = []
        self._patches: list[tuple[Any, str, Any]] = []
        self._running = threading.local()  # the top-level label running in this thread
        self.missing: list[str] = []

    def record(self, label: str, start: float, end: float) -> None:
        with self._lock:
            self._spans.append((label, start, end))

    def timed(self, label: str, parent: str | None, function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = getattr(self._running, "label", None)
            if parent is None:
                self._running.label = label
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self._running.label = outer
                self.record(label if parent is None else f"{outer or parent}/{label}", start, end)

        return wrapper

    def marker(self, label: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.record(f"marker:{label}", start, time.perf_counter())

        return wrapper

    def install(self) -> None:
        import importlib

        for module_name, attribute, label, parent in TIMED:
            owner: Any = importlib.import_module(module_name)
            *path, name = attribute.split(".")
            try:
                for part in path:
                    owner = getattr(owner, part)
                original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            except (AttributeError, KeyError):  # the code moved on: say so, time the rest
                self.missing.append(f"{module_name}.{attribute}")
                continue
            self._patches.append((owner, name, original))
            setattr(owner, name, self.timed(label, parent, original))
        for module_name, attribute, label in MARKERS:
            module = importlib.import_module(module_name)
            if not hasattr(module, attribute):
                self.missing.append(f"{module_name}.{attribute}")
                continue
            original = getattr(module, attribute)
            self._patches.append((module, attribute, original))
            setattr(module, attribute, self.marker(label, original))
        score = importlib.import_module("actalign.tasks.score")
        if hasattr(score, "make_scorer"):
            make_scorer = score.make_scorer
            self._patches.append((score, "make_scorer", make_scorer))
            score.make_scorer = lambda *a, **k: _TimedScorer(make_scorer(*a, **k), self)
        else:
            self.missing.append("actalign.tasks.score.make_scorer")

    def restore(self) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()

    def take(self) -> list[tuple[str, float, float]]:
        with self._lock:
            spans, self._spans = self._spans, []
        return spans


class _TimedScorer:
    """A scorer whose ``score_many`` and ``score_video`` are timed; everything else is the scorer's own."""

    def __init__(self, scorer: Any, timers: StageTimers) -> None:
        self._scorer, self._timers = scorer, timers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scorer, name)

    def score_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("score_many", *args, **kwargs)

    def score_video(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("score_video", *args, **kwargs)

    def _timed(self, method: str, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return getattr(self._scorer, method)(*args, **kwargs)
        finally:
            self._timers.record(f"{SCORING[1]}/{SCORING[0]}", start, time.perf_counter())


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def breakdown(spans: list[tuple[str, float, float]], started: float, finished: float) -> dict[str, Any]:
    """Seconds per stage label (summed over threads), our code's busy wall time, and the rest of the wall time."""
    sums: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    markers = {label.removeprefix("marker:"): (start, end) for label, start, end in spans if label.startswith("marker:")}
    spans = [span for span in spans if not span[0].startswith("marker:")]
    for label, start, end in spans:
        sums[label] += end - start
        calls[label] += 1
    top = [(start, end) for label, start, end in spans if "/" not in label]
    busy = _union_seconds(top)
    wall = finished - started
    first = min((start for start, _ in top), default=finished)
    last = max((end for _, end in top), default=finished)
    return {
        "stages": {label: {"seconds": sums[label], "calls": calls[label]} for label in sums},
        "our_code_busy_s": busy,
        "prefect_and_waiting_s": wall - busy,
        "before_first_stage_s": first - started,  # flow run creation, parameters, until load_inputs starts
        "after_last_stage_s": finished - last,  # the report task's end, flow run end state, until run_pipeline returns
        "markers": {label: {"start_s": start - started, "seconds": end - start} for label, (start, end) in markers.items()},
    }


# --- the plain loop ---------------------------------------------------------------------


def plain_loop(config: Any, batching: str = "shard") -> dict[str, Any]:
    """The pipeline's work with the pure functions in one plain loop: no Prefect, no store, one thread.

    ``batching``: ``shard`` (default) decodes the videos of one shard (``config.videos_per_shard``) and encodes
    their frames together, in the same batches as the acquire stage (whose batches span the videos of
    its shard); ``video`` encodes each video's frames on their own (more, smaller forward passes).
    """
    import numpy as np

    from actalign.frames import iter_sampled_frames
    from actalign.inputs import read_inputs
    from actalign.registry import encoder_for
    from actalign.scorers import Calibration, ClassTexts, make_scorer
    from actalign.tasks.texts import texts_to_encode

    seconds: dict[str, float] = defaultdict(float)
    started = time.perf_counter()
    encoder = encoder_for(config)  # loaded before: a dictionary look-up
    inputs = read_inputs(config)
    seconds["inputs"] = time.perf_counter() - started

    mark = time.perf_counter()
    rows: list[tuple[str, str, str]] = []  # (class_id, row kind, text), as the text stage stores them
    for spec in inputs.classes:
        for kind in config.text_kinds():
            rows += [(spec.class_id, row_kind, text) for row_kind, _, text in texts_to_encode(spec, kind, list(spec.texts(kind)), config)]
    embedded = encoder.embed_texts([text for _, _, text in rows])
    by_class: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (class_id, row_kind, _), vector in zip(rows, embedded):
        by_class[class_id][row_kind].append(vector)
    texts = {
        class_id: ClassTexts(
            class_id,
            np.stack(parts["step"]),
            parts["name"][0],
            attributes=np.stack(parts["attribute"]) if parts.get("attribute") else None,
            subtexts=np.stack(parts["subtext"]) if parts.get("subtext") else None,
        )
        for class_id, parts in by_class.items()
    }
    seconds["texts"] = time.perf_counter() - mark

    scorers = [make_scorer(name, smoothing=config.smoothing) for name in config.scorers]
    calibration = Calibration(encoder.identity.logit_scale, encoder.identity.logit_bias)
    group = config.videos_per_shard(len(inputs.videos)) if batching == "shard" else 1
    frames = pairs = forward_calls = 0
    for first in range(0, len(inputs.videos), group):
        videos = inputs.videos[first : first + group]
        mark = time.perf_counter()
        sampled = [
            np.stack([image for _, image in iter_sampled_frames(v.source, config.fps, encoder.image_size, v.start_s, v.end_s, v.obfuscation, encoder.identity.centre_crop)])
            for v in videos
        ]
        now = time.perf_counter()
        seconds["decode + sample"] += now - mark
        mark = now
        embeddings = encoder.embed_images(np.concatenate(sampled))
        forward_calls += math.ceil(len(embeddings) / encoder.batch_size)
        now = time.perf_counter()
        seconds["encode frames"] += now - mark
        mark = now
        for video, video_embeddings in zip(videos, np.split(embeddings, np.cumsum([len(f) for f in sampled])[:-1])):
            candidates = [texts[c] for c in video.candidates]
            for scorer in scorers:
                pairs += len(scorer.score_many(video_embeddings, candidates, calibration))
        seconds["score"] += time.perf_counter() - mark
        frames += len(embeddings)
    return {
        "wall_s": time.perf_counter() - started, "stages": dict(seconds), "videos": len(inputs.videos), "frames": frames,
        "pairs": pairs, "batching": batching, "forward_calls": forward_calls,
    }


# --- the flow runs ----------------------------------------------------------------------


def flow_run(config: Any, timers: StageTimers) -> dict[str, Any]:
    """One ``run_pipeline`` with its wall time, counters, breakdown and status-row seconds."""
    from dataclasses import asdict

    from actalign.flows.pipeline import run_pipeline
    from actalign.frames import DECODE_STATS

    DECODE_STATS.reset()
    timers.take()
    started = time.perf_counter()
    summary = run_pipeline(config)
    finished = time.perf_counter()
    result = {
        "wall_s": finished - started,
        "summary": asdict(summary),
        "decode_stats": {"videos": DECODE_STATS.videos, "frames": DECODE_STATS.frames},
        **breakdown(timers.take(), started, finished),
    }
    result["status_seconds"] = status_seconds(config, summary.run_id)
    return result


def status_seconds(config: Any, run_id: str) -> list[dict[str, Any]]:
    from actalign.queries.runner import run_sql
    from actalign.storage.workdir import Workdir

    sql = "SELECT stage, state, count(*) AS items, sum(seconds) AS seconds FROM status WHERE run_id = ? GROUP BY ALL ORDER BY ALL"
    return run_sql(Workdir.open(config.workdir), sql, [run_id]).records()


# --- output -----------------------------------------------------------------------------


def print_breakdown(title: str, run: dict[str, Any]) -> None:
    wall = run["wall_s"]
    stages = run["stages"]

    def line(label: str, seconds: float, calls: int | None, indent: int) -> None:
        count = f"{calls:5d} calls" if calls is not None else " " * 11
        print(f"    {' ' * indent}{label:{44 - indent}s} {seconds:8.2f} s  {count}  {100 * seconds / wall:5.1f} % of wall")

    print(f"  {title} ({wall:.2f} s wall; stage seconds are summed over threads):")
    for key in dict.fromkeys(key for _, _, key, parent in TIMED if parent is None):  # a stage's tasks share its label
        if key not in stages:
            continue
        line(key, stages[key]["seconds"], stages[key]["calls"], 0)
        label = key
        nested = {k: v for k, v in stages.items() if k.startswith(f"{label}/")}
        for child, values in nested.items():
            line(child.split("/", 1)[1], values["seconds"], values["calls"], 2)
        if nested and label in REST:
            line(f"rest ({REST[label]})", stages[key]["seconds"] - sum(v["seconds"] for v in nested.values()), None, 2)
    line("our stage code busy (union over threads)", run["our_code_busy_s"], None, 0)
    line("Prefect and waiting (wall minus the above)", run["prefect_and_waiting_s"], None, 0)
    line("of which before the first stage", run["before_first_stage_s"], None, 2)
    line("of which after the last stage", run["after_last_stage_s"], None, 2)
    markers = run["markers"]
    report_task = markers.get("report task, as the flow calls it")
    if report_task:
        body = sum(stages[k]["seconds"] for k in stages if k.startswith("report:"))
        line("report task: Prefect's task run around it", report_task["seconds"] - body, None, 4)
    flow_body = markers.get("flow body: stages")
    if flow_body:
        line("flow end: after the flow body returns", wall - flow_body["start_s"] - flow_body["seconds"], None, 4)
    cells = ", ".join(f"{r['stage']} {r['state']} {r['items']} ({r['seconds']:.2f} s)" for r in run["status_seconds"])
    print(f"    status rows, items and summed seconds: {cells}")


def print_plain(title: str, run: dict[str, Any]) -> None:
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in run["stages"].items())
    print(f"  {title} ({run['wall_s']:.2f} s; {run['batching']} batches, {run['forward_calls']} image forward passes): {parts}")


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200, help="generated videos (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="tasks at once in the flow (RunConfig.workers, default 2)")
    parser.add_argument("--shard-size", type=int, help="videos per task (default: RunConfig's, from the videos and workers)")
    parser.add_argument("--model", default="tiny-random", help="default tiny-random (untrained)")
    parser.add_argument("--scorer", action="append", help="repeat for several (default: the pipeline's default scorers)")
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument(
        "--plain-batching", choices=("shard", "video"), default="shard",
        help="plain loop: encode a shard's frames together, in the acquire stage's batches (default), or each video's alone",
    )
    parser.add_argument("--warmup-videos", type=int, default=6, help="videos of the warm-up plain loop and flow run (0: no warm-up flow run)")
    parser.add_argument(
        "--server", choices=("temporary", "configured"), default="temporary",
        help="temporary: start Prefect's temporary local server once and time its start; "
        "configured: use the server the caller has set up (PREFECT_API_URL or a test harness)",
    )
    parser.add_argument(
        "--torch-threads", type=int,
        help="torch intra-op threads for the pipeline and the plain loop alike (default: torch's, one per core); "
        "on a loaded machine 2-thread passes of the tiny model stall on descheduled threads, 1 avoids it",
    )
    parser.add_argument(
        "--no-heartbeats", action="store_true",
        help="turn Prefect's flow-run heartbeats off for the flow runs (their thread is joined at the end of every flow run)",
    )
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    parser.add_argument("--keep", type=Path, help="keep the videos and workdirs in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.videos < 1 or args.workers < 1 or any(n is not None and n < 1 for n in (args.shard_size, args.torch_threads)):
        parser.error("--videos, --workers, --shard-size and --torch-threads must be at least 1")

    scratch_dir = tempfile.TemporaryDirectory(prefix="bench-pipeline-")
    scratch = Path(scratch_dir.name)
    before = set(os.environ)
    prepare_environment(scratch)
    try:
        return _measure(args, args.keep.resolve() if args.keep else scratch)
    finally:
        for name in set(os.environ) - before:  # a caller in the same process (a test) keeps its environment
            del os.environ[name]
        scratch_dir.cleanup()


def _measure(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    fixed: dict[str, float] = {}
    started = time.perf_counter()
    import numpy  # noqa: F401
    import prefect  # noqa: F401
    import torch

    from actalign.caveats import UNTRAINED_BANNER
    from actalign.cli.environment import quiet_libraries
    from actalign.config import RunConfig
    from actalign.flows.pipeline import run_pipeline  # noqa: F401 - imports belong to the fixed costs
    from actalign.registry import encoder_for
    from actalign.scorers import DEFAULT_SCORERS

    quiet_libraries()
    fixed["imports"] = time.perf_counter() - started
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    scorers = tuple(args.scorer or DEFAULT_SCORERS)

    data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    manifest, warmup_manifest, classes = make_videos(data / "input", args.videos, args.warmup_videos or 6)
    generation_s = time.perf_counter() - started

    def config_for(videos: Path, workdir: str) -> RunConfig:
        return RunConfig(
            videos=videos, classes=classes, workdir=data / workdir, model=args.model, fps=args.fps,
            scorers=scorers, shard_size=args.shard_size, workers=args.workers,
        )

    config = config_for(manifest, "work")
    shard_size = config.videos_per_shard(args.videos)
    warm = config_for(warmup_manifest, "work-warmup")
    for workdir in (config.workdir, warm.workdir):
        shutil.rmtree(workdir, ignore_errors=True)  # a kept folder from an earlier run: start cold

    started = time.perf_counter()
    encoder = encoder_for(config)
    fixed["model load"] = time.perf_counter() - started
    settings = encoder.settings()
    print(f"pipeline overhead: {args.videos} generated videos (3 s, 128x128, 12 fps; generated in {generation_s:.1f} s, not timed), "
          f"6 classes, every class a candidate; model {args.model} ({settings['device']}, {settings['dtype']}, "
          f"{settings['image_size'][0]} px, batch {settings['batch_size']}), {args.fps:g} fps, scorers {', '.join(scorers)}, "
          f"workers {args.workers}, shard size {shard_size}")
    if not encoder.identity.trained:
        print(UNTRAINED_BANNER)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; prefect {prefect.__version__}, "
          f"server: {args.server}, flow heartbeats: {'off' if args.no_heartbeats else 'on (Prefect default)'}; "
          f"plain loop: {args.plain_batching} batches")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes skew every figure)")

    started = time.perf_counter()
    plain_loop(warm, args.plain_batching)  # numba JIT of the scorers, PyAV and the encoder's first batches
    fixed["warm-up plain loop (JIT)"] = time.perf_counter() - started

    timers = StageTimers()
    runs: dict[str, Any] = {}
    with ExitStack() as stack:
        if args.server == "temporary":
            from prefect.testing.utilities import prefect_test_harness

            started = time.perf_counter()
            stack.enter_context(prefect_test_harness(server_startup_timeout=120))
            fixed["Prefect temporary server start"] = time.perf_counter() - started
        if args.no_heartbeats:
            from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

            stack.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
        timers.install()
        stack.callback(timers.restore)
        if args.warmup_videos > 0:
            started = time.perf_counter()
            flow_run(warm, timers)
            fixed[f"warm-up flow run ({args.warmup_videos} videos, own workdir)"] = time.perf_counter() - started

        runs["plain_before"] = measured(plain_loop, config, args.plain_batching)
        runs["cold"] = measured(flow_run, config, timers)
        runs["rerun"] = measured(flow_run, config, timers)
        runs["plain_after"] = measured(plain_loop, config, args.plain_batching)
        missing = list(timers.missing)
    if args.server == "temporary":
        print()  # the temporary server may have printed tracebacks at shutdown: harmless

    plain_s = (runs["plain_before"]["wall_s"] + runs["plain_after"]["wall_s"]) / 2
    cold, rerun = runs["cold"], runs["rerun"]
    ratios = {"pipeline_over_plain": cold["wall_s"] / plain_s, "rerun_over_cold": rerun["wall_s"] / cold["wall_s"]}
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print("\nfixed costs (in neither ratio):")
    for name, seconds in fixed.items():
        print(f"  {name:52s} {seconds:7.2f} s")
    if args.server == "configured":
        print(f"  {'Prefect server start':52s} not measured (--server configured)")
    print(f"\n  {'':30s} {'wall s':>8s} {'CPU s':>6s} {'server CPU s':>12s} {'peak RSS MB':>12s} {'decoded':>8s} {'encoded':>8s} {'texts':>6s} {'scored':>7s} {'reused':>7s}")
    for name, label in (("plain_before", "plain loop (before)"), ("cold", "pipeline, cold run"),
                        ("rerun", "pipeline, unchanged re-run"), ("plain_after", "plain loop (after)")):
        run = runs[name]
        if "summary" in run:
            s = run["summary"]
            counts = f"{s['decoded_frames']:8d} {s['encoded_frames']:8d} {s['encoded_texts']:6d} {s['scored_pairs']:7d} {s['reused_pairs']:7d}"
        else:
            counts = f"{run['frames']:8d} {run['frames']:8d} {'':6s} {run['pairs']:7d} {'':7s}"
        print(f"  {label:30s} {run['wall_s']:8.2f} {run['cpu_s']:6.2f} {run['children_cpu_s']:12.2f} {run['peak_rss_mb']:12.1f} {counts}")
    print(f"  (CPU s: this process; server CPU s: its child processes, i.e. the temporary Prefect server; peak RSS: VmHWM\n"
          f"  reset before each phase; getrusage max RSS of the whole process: {max_rss_mb:.1f} MB)")

    goals = {**GOALS, **MODEL_GOALS.get(args.model, {})}
    print("\nratios (measured in this run, not asserted):")
    for name, label, (top, bottom) in (
        ("pipeline_over_plain", "pipeline cold / plain loop (mean of before and after)", (cold["wall_s"], plain_s)),
        ("rerun_over_cold", "unchanged re-run / cold run", (rerun["wall_s"], cold["wall_s"])),
    ):
        r, goal = ratios[name], goals[name]
        print(f"  {label:53s} = {top:.2f} / {bottom:.2f} = {r:.3f} (goal <= {goal}): {'PASS' if r <= goal else 'FAIL'}")

    print("\nwhere the time goes:")
    print_plain("plain loop, before", runs["plain_before"])
    print_plain("plain loop, after", runs["plain_after"])
    print_breakdown("pipeline, cold run", cold)
    print_breakdown("pipeline, unchanged re-run", rerun)
    if missing:
        print(f"  not timed (no longer in the code): {', '.join(missing)}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    results = {
        "config": {
            "videos": args.videos, "workers": args.workers, "shard_size": shard_size, "model": args.model, "trained": encoder.identity.trained,
            "fps": args.fps, "scorers": list(scorers), "server": args.server, "plain_batching": args.plain_batching, "warmup_videos": args.warmup_videos,
            "flow_heartbeats": not args.no_heartbeats, "torch_threads": torch.get_num_threads(),
            "encoder": {k: v for k, v in settings.items() if isinstance(v, (str, int, float, bool, list))},
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "prefect": prefect.__version__,
        },
        "generation_s": generation_s,
        "fixed_s": fixed,
        "runs": runs,
        "plain_mean_s": plain_s,
        "ratios": ratios,
        "goals": goals,
        "max_rss_mb": max_rss_mb,
        "not_timed": missing,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        print(f"numbers written to {args.json}")
    return results


if __name__ == "__main__":
    main()
