"""`actalign sweep --grid grid.yaml`: run every arm of a grid (or, with --dry-run, say what that would compute)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from actalign.cli.display import console, print_error, print_line, print_result, working
from actalign.cli.environment import prepare_prefect, start_prefect
from actalign.errors import InputError
from actalign.queries.runner import Result, sql_command

STAGE_HEADERS = {"acquire": "videos", "scripts": "scripts", "step_embeddings": "texts", "score": "pairs"}

if TYPE_CHECKING:
    from actalign.sweep.grid import Grid


def sweep(
    grid: Annotated[Path, typer.Option("--grid", help="The grid file: a base configuration and axes over its fields (docs/sweeps.md).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print the arms and what the sweep would compute, shared work counted once; compute and send nothing.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's task logs.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="When another command is writing the workdir, exit 2 naming it instead of waiting.")] = False,
) -> None:
    """Compare prompt templates, scorers and settings in one sweep: each arm a normal run, shared stages computed once,
    the winner ranked on one split of the videos and reported on the other."""
    from actalign.sweep.grid import describe_value, read_grid

    try:
        parsed = read_grid(grid)
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    arms = Result(["arm", "settings"], [(a.name, "; ".join(f"{k}={describe_value(v)}" for k, v in a.settings.items())) for a in parsed.arms])
    print_result(arms, title=f"sweep {parsed.sweep_id}: {len(parsed.arms)} arms (baseline: {parsed.baseline})")
    raise typer.Exit(_dry_run(parsed) if dry_run else _run(parsed, verbose, wait=not no_wait))


def _dry_run(grid: Grid) -> int:
    from actalign.storage.sweep_work import plan_sweep
    from actalign.tasks.acquire import source_fingerprint

    try:
        with working("planning every arm against the store ..."):
            arms, work = plan_sweep(grid, source_fingerprint)
    except InputError as exc:
        print_error(str(exc))
        return 2
    stages = list(work.stages)
    rows = [(arm.arm, *(sum(arm.items.get(stage, {}).values()) for stage in stages), len(arm.llm_requests)) for arm in arms]
    headers = ["arm", *(STAGE_HEADERS.get(stage, stage) for stage in stages), "LLM requests"]
    print_result(Result(headers, rows), title="what each arm alone would compute (against the store now)")
    console.print("the whole sweep, shared work counted once:", highlight=False)
    for line in work.lines():
        print_line(f"  {line}")
    return 0


def _run(grid: Grid, verbose: bool, wait: bool) -> int:
    from actalign.storage.lock import WorkdirBusy, write_lock

    workdir = grid.arms[0].config.workdir
    prepare_prefect(workdir, verbose)
    try:  # locked before Prefect starts, as `actalign run` does; the flow's own lock is then a no-op
        with write_lock(workdir, "sweep", wait=wait):
            start_prefect(working)
            from actalign.flows.sweep import run_sweep

            try:
                summary = run_sweep(grid.path)
            except InputError as exc:
                print_error(str(exc))
                return 2
    except WorkdirBusy as exc:
        print_error(str(exc))
        return 2
    rows = [(a.arm, a.run_id, a.state, "reused (earlier sweep)" if a.skipped else "ran") for a in summary.arms]
    print_result(Result(["arm", "run", "state", ""], rows), title=f"sweep {summary.sweep_id}")
    print_line(f"chosen arm: {summary.chosen}" if summary.chosen else "no arm chosen (see the report)")
    for fmt, path in summary.reports.items():
        print_line(f"{fmt}: {path}")
    console.print("query the arms:", highlight=False)
    print_line("  " + sql_command(summary.workdir, f"SELECT * FROM sweeps WHERE sweep_id = '{summary.sweep_id}'"))
    return 0 if all(a.state == "completed" for a in summary.arms) else 1  # as `actalign run`: 1 when an item failed
