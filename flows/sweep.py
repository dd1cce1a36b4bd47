"""The sweep flow (``actalign-sweep``): every arm of a grid as a nested pipeline flow run, one workdir lock.

Arms run one after another, each a normal run (its own run id, report and views), a child of the
sweep's flow run in Prefect named "<sweep id> <arm>". They carry no Prefect tag: a tag reaches every task run, and Prefect then checks
tag concurrency limits for each, which made every arm about twice as slow. What arms share is computed once because the store is content-addressed: frames at one fps
and model are encoded by the first arm needing them and reused by every later one, a prompt's scripts
once for every scorer and smoothing arm, a pair key scored once. ``sweeps/<id>/arms.parquet`` records
sweep -> arm -> run id after every arm; the sweep id comes from the grid's content, so running the same
grid again resumes: an arm whose run completed is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from actalign.flows.pipeline import RunSummary, run_pipeline
from actalign.queries.sweep_report import arm_scorer, write_sweep_report
from actalign.storage.lock import write_lock
from actalign.storage.records import new_run_id, read_run_row
from actalign.storage.sweeps import column_name, read_arms, write_arms
from actalign.storage.workdir import Workdir
from actalign.sweep.grid import Arm, Grid, describe_value, read_grid

DONE = ("completed", "completed_with_failures")


@dataclass(frozen=True)
class ArmOutcome:
    arm: str
    run_id: str
    state: str
    skipped: bool  # finished by an earlier sweep of the same grid
    summary: RunSummary | None = None  # None when skipped


@dataclass(frozen=True)
class SweepSummary:
    sweep_id: str
    workdir: str
    arms: list[ArmOutcome]
    chosen: str | None
    reports: dict[str, str] = field(default_factory=dict)  # format (and "config") -> path

    def total(self, counter: str) -> int:
        """A RunSummary counter summed over the arms this sweep ran."""
        return sum(getattr(a.summary, counter) for a in self.arms if a.summary is not None)


@flow(name="actalign-sweep")
def sweep(grid_file: str, formats: tuple[str, ...] = ("md", "json", "html")) -> SweepSummary:
    """Run every arm of the grid not finished yet, then write the sweep report and the chosen arm's config."""
    grid = read_grid(Path(grid_file))
    root = grid.arms[0].config.workdir
    with write_lock(root, "sweep"):  # a no-op when the caller (the CLI) holds it already in this thread
        return _sweep(grid, Workdir.open(root), formats)


def _sweep(grid: Grid, workdir: Workdir, formats: tuple[str, ...]) -> SweepSummary:
    logger = get_run_logger()
    sweep_id = grid.sweep_id
    recorded = {row["arm"]: row for row in read_arms(workdir, sweep_id)}
    rows = [_row(grid, sweep_id, number, arm, recorded.get(arm.name)) for number, arm in enumerate(grid.arms)]
    write_arms(workdir, sweep_id, rows, grid.varied)
    logger.info("sweep %s: %d arms in %s", sweep_id, len(rows), workdir.root)
    outcomes = []
    for row, arm in zip(rows, grid.arms):
        if row["run_id"] and _run_state(workdir, row["run_id"]) in DONE:
            logger.info("arm %s: run %s finished earlier; skipped", arm.name, row["run_id"])
            outcomes.append(ArmOutcome(arm.name, row["run_id"], row["state"], skipped=True))
            continue
        row["run_id"], row["state"] = new_run_id(), "running"
        write_arms(workdir, sweep_id, rows, grid.varied)  # before the run: a killed sweep knows which run to look at
        try:
            summary = run_pipeline(arm.config, row["run_id"], run_name=f"{sweep_id} {arm.name}")
            row["state"] = summary.state
        except Exception as exc:  # the pipeline recorded its run as failed; the other arms carry on
            logger.error("arm %s: run %s crashed: %s: %s", arm.name, row["run_id"], type(exc).__name__, exc)
            row["state"], summary = "failed", None
        write_arms(workdir, sweep_id, rows, grid.varied)
        outcomes.append(ArmOutcome(arm.name, row["run_id"], row["state"], skipped=False, summary=summary))
    paths, chosen = write_sweep_report(workdir, grid, rows, formats)
    for row in rows:
        row["chosen"] = row["arm"] == chosen
    write_arms(workdir, sweep_id, rows, grid.varied)
    if chosen:
        logger.info("sweep %s: chosen arm %s (ranked on the select split; see %s)", sweep_id, chosen, paths.get("md"))
    return SweepSummary(sweep_id, str(workdir.root), outcomes, chosen, {k: str(v) for k, v in paths.items()})


def _row(grid: Grid, sweep_id: str, number: int, arm: Arm, recorded: dict[str, Any] | None) -> dict[str, Any]:
    row = {
        "sweep_id": sweep_id, "sweep_name": grid.name, "arm_index": number, "arm": arm.name,
        "run_id": recorded["run_id"] if recorded else None, "state": recorded["state"] if recorded else "pending",
        "is_baseline": arm.name == grid.baseline, "settings": json.dumps(arm.settings, sort_keys=True, default=str),
        "scorer": arm_scorer(grid, arm), "chosen": False,
    }
    row.update({column_name(f): describe_value(arm.settings[f]) if f in arm.settings else None for f in grid.varied})
    return row


def _run_state(workdir: Workdir, run_id: str) -> str | None:
    row = read_run_row(workdir.run_record_path(run_id))
    return row["state"] if row else None


def run_sweep(grid_file: Path) -> SweepSummary:
    """The sweep flow with heartbeats off without a configured server, as ``run_pipeline`` does for one run."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    if get_current_settings().api.url:
        return sweep(str(grid_file))
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return sweep(str(grid_file))
