"""`actalign status` and `actalign gc`: what the store holds, what a run would recompute, what no run needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from actalign.cli.display import console, print_error, print_line, print_model_banner, working
from actalign.config import RunConfig
from actalign.errors import InputError
from actalign.registry import ModelIdentity, ModelNotLocalError

if TYPE_CHECKING:
    from actalign.inputs import Inputs

WHAT = {  # stage -> what one item is, and what computing it means
    "acquire": ("videos", "decode and encode"),
    "scripts": ("scripts (LLM requests or hand-written)", "write"),
    "step_embeddings": ("scripts", "embed"),
    "score": ("(video, candidate, scorer) pairs", "score"),
}


def show_status(config: RunConfig, wait: bool = True) -> int:
    """Plan the run without running it, store the plan (views freshness, latest_freshness) and print it.

    The model is neither built nor loaded: its identity is read from its files."""
    from actalign.inputs import read_inputs
    from actalign.registry import identity_for

    try:
        inputs = read_inputs(config)
        console.print(f"{len(inputs.videos)} videos, {len(inputs.classes)} classes; model {config.model}", highlight=False)
        identity = identity_for(config)
    except ModelNotLocalError as exc:
        console.print(f"{exc} Until then every stage that uses the model is to compute; status compares item by item once it is here.", highlight=False)
        return 0
    except InputError as exc:
        print_error(str(exc))
        return 2
    print_model_banner(identity.caveat)
    return _locked(config.workdir, "status", wait, lambda: _show_plan(config, inputs, identity))


def _show_plan(config: RunConfig, inputs: Inputs, identity: ModelIdentity) -> int:
    from actalign.queries.runner import refresh_views, sql_command
    from actalign.storage.freshness import ERROR, STAGES, STALE, plan_run
    from actalign.storage.records import mark_interrupted
    from actalign.storage.workdir import Workdir
    from actalign.tasks.acquire import source_fingerprint

    workdir = Workdir.open(config.workdir)
    for run_id in mark_interrupted(workdir):
        console.print(f"run {run_id} was interrupted (its process is gone)", highlight=False)
    with working("comparing every video, script and pair with the store ..."):
        plan = plan_run(workdir, config, inputs, identity, lambda video: source_fingerprint(video, config))
        plan.write(workdir, None)
        problem = refresh_views(workdir)
    if problem:
        console.print(problem, highlight=False)

    table = Table(title=f"Stages of a run with these options (compared with run {plan.previous_run or '-'})", title_justify="left")
    for column in ("stage", "items", "fresh", "to compute", "why"):
        table.add_column(column)
    counts = plan.counts()
    for stage in STAGES:
        c = counts[stage]
        reasons = "\n".join(f"{n} {reason}" for reason, n in plan.reasons(stage).most_common(4))
        table.add_row(stage, f"{sum(c.values())} {WHAT[stage][0]}", str(c["fresh"]), str(c[STALE] + c[ERROR]), reasons)
    console.print(table)
    todo = {stage: counts[stage][STALE] for stage in STAGES}
    if not any(todo.values()):
        console.print("Everything is fresh: a run would compute nothing.")
    else:
        console.print("A run would " + "; ".join(f"{WHAT[s][1]} {n} {WHAT[s][0]}" for s, n in todo.items() if n) + ".", highlight=False)
    console.print("Item by item:", highlight=False)
    query = "SELECT stage, item, reason FROM freshness WHERE run_id IS NULL AND state <> 'fresh'"
    print_line("  " + sql_command(config.workdir, query))
    return 0


def _locked(root: Path, command: str, wait: bool, work: Callable[[], int]) -> int:
    """``work()``'s exit code, run under the workdir's write lock; 2 naming the holder when it is taken and not ``wait``."""
    from actalign.storage.lock import WorkdirBusy, write_lock

    try:
        with write_lock(root, command, wait=wait):
            return work()
    except WorkdirBusy as exc:
        print_error(str(exc))
        return 2


def collect_garbage(root: Path, dry_run: bool, wait: bool = True) -> int:
    if not root.exists():
        print_error(f"workdir {root} does not exist")
        return 2
    return _locked(root, "gc", wait, lambda: _collect_garbage(root, dry_run))


def _collect_garbage(root: Path, dry_run: bool) -> int:
    from actalign.queries.runner import refresh_views
    from actalign.storage.gc import collect, find_garbage
    from actalign.storage.records import mark_interrupted
    from actalign.storage.workdir import Workdir

    workdir = Workdir.open(root)
    mark_interrupted(workdir)
    if problem := refresh_views(workdir):
        console.print(problem, highlight=False)
    garbage = find_garbage(workdir)
    for run_id in garbage.unplanned_runs:
        console.print(f"run {run_id} has no plan (made by an older version, or killed before planning): it keeps no store entry", highlight=False)
    for path in garbage.files:
        console.print(f"{'would delete' if dry_run else 'delete'} {path.relative_to(workdir.root)}", highlight=False, soft_wrap=True)
    summary = f"{len(garbage.files)} files, {garbage.bytes / 1e6:.1f} MB; {garbage.referenced} store files referenced by runs are kept"
    if dry_run:
        console.print(f"dry run: would delete {summary}.", highlight=False)
        return 0
    if garbage.live_runs and garbage.files:
        print_error(f"run(s) {', '.join(garbage.live_runs)} may still be running; nothing deleted. Collect when they end.")
        return 1
    collect(garbage)
    console.print(f"deleted {summary}.", highlight=False)
    return 0
