"""The Python API, for notebooks: run the pipeline and read a run's results as Arrow tables.

The same pipeline, stores and views as the ``actalign`` command, without its screen output:
``run`` prints no library warnings unless ``verbose``, and a run's caveat (an untrained or toy
model) is on the result instead of a banner. Tables are ``pyarrow.Table``s, so
``.to_pandas()`` works once pandas is installed (``pip install 'actalign[pandas]'``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actalign.caveats import banner
from actalign.config import DEFAULT_WORKDIR, make_config
from actalign.errors import InputError
from actalign.registry import DEFAULT_MODEL

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Results", "open_workdir", "run"]


@dataclass(frozen=True)
class Results:
    """One run of a workdir. The tables are read from the workdir's DuckDB views on first use."""

    run_id: str
    workdir: Path
    report: Path | None  # runs/<run>/report.md, None if it was not written (a crashed run)
    state: str  # running, completed, completed_with_failures, failed or interrupted
    model: str
    caveat: str | None  # why the numbers may mean little (an untrained or toy model), else None

    @cached_property
    def accuracy(self) -> pa.Table:
        """One row per scorer: n scored, top-1/2/3 (fractions) with 95 % Wilson intervals, the random baseline."""
        return self.sql("SELECT * FROM accuracy WHERE run_id = ? ORDER BY scorer", self.run_id)

    @cached_property
    def predictions(self) -> pa.Table:
        """One row per (video, scorer): the predicted class, the label and the rank of the true label."""
        return self.sql("SELECT * FROM predictions WHERE run_id = ? ORDER BY scorer, video_id", self.run_id)

    @cached_property
    def scores(self) -> pa.Table:
        """One row per (video, candidate, scorer): the score every prediction was made from."""
        return self.sql("SELECT * FROM scores WHERE run_id = ? ORDER BY scorer, video_id, candidate", self.run_id)

    def sql(self, query: str, *params: Any) -> pa.Table:
        """Any query over the workdir's views (``videos``, ``runs``, ``status``, ...), with ``?`` parameters."""
        from actalign.queries.runner import session
        from actalign.storage.workdir import Workdir

        with session(Workdir(self.workdir)) as s:
            return s.con.sql(query, params=list(params) or None).to_arrow_table()

    def __repr__(self) -> str:
        top1 = ", ".join(
            f"{row['scorer']} {100 * row['top1']:.1f} % (n={row['n']})" if row["top1"] is not None else f"{row['scorer']} - (n=0)"
            for row in self.accuracy.to_pylist()
        )
        lines = [f"actalign run {self.run_id} ({self.state}) in {self.workdir}", f"  model: {self.model}", f"  top-1: {top1 or 'no labelled videos'}"]
        if self.caveat:
            lines.append(f"  caveat: {self.caveat}")
        return "\n".join(lines)


def run(
    videos: str | Path | None = None,
    classes: str | Path | None = None,
    *,
    model: str = DEFAULT_MODEL,
    scorers: str | Sequence[str] | None = None,
    workdir: str | Path = DEFAULT_WORKDIR,
    limit: int | None = None,
    benchmark: str | None = None,
    verbose: bool = False,
    wait: bool = True,
    **options: Any,
) -> Results:
    """Run the whole pipeline, as ``actalign run`` does, and return the run's results.

    ``videos`` and ``classes`` are what ``--videos`` and ``--classes`` take; ``options`` are any other
    RunConfig field (``fps=2.0``, ``provider="openai"``, ``llm={...}``; see ``actalign config``).
    Bad options raise ValueError and bad inputs InputError, both before any work starts.
    ``verbose`` shows Prefect's logs and library warnings. While another process writes the workdir,
    the run waits for it, saying who on stderr; with ``wait=False`` it raises ``WorkdirBusy`` instead.
    """
    from actalign.cli.environment import prepare_prefect, quiet_libraries
    from actalign.inputs import load_inputs
    from actalign.registry import fetch_identity

    settings = dict(videos=videos, classes=classes, model=model, workdir=workdir, limit=limit, benchmark=benchmark, **options)
    if scorers is not None:
        settings["scorers"] = (scorers,) if isinstance(scorers, str) else tuple(scorers)
    config = make_config(settings)
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
        load_inputs(config)  # input and credential errors before Prefect starts, as the CLI's preflight
        if not verbose:
            quiet_libraries()
        fetch_identity(config)  # an unknown model too, without loading its weights (only encoding tasks do)
        prepare_prefect(config.workdir, verbose)  # before Prefect is imported
        from actalign.flows.pipeline import run_pipeline

        with nullcontext() if verbose else _logger_level("prefect", logging.ERROR):  # its warnings, the caveat's included
            summary = run_pipeline(config, wait=wait)
    return open_workdir(summary.workdir, summary.run_id)


def open_workdir(workdir: str | Path, run_id: str | None = None) -> Results:
    """The results of ``run_id`` in an existing workdir, or of its latest run: to come back to a run later."""
    from actalign.queries import tables
    from actalign.queries.runner import session
    from actalign.storage.workdir import Workdir

    root = Path(workdir).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"workdir {root} does not exist")
    if not (root / "runs").is_dir():  # checked before Workdir.open, which would lay out a new workdir here
        raise InputError(f"{root} is not an actalign workdir: it has no runs/ folder")
    store = Workdir.open(root)
    with session(store) as s:
        run_id = run_id or tables.latest_run(s)
        info = tables.run_info(s, run_id) if run_id else None
    if info is None:
        raise InputError(f"workdir {store.root} has no run {run_id!r}" if run_id else f"workdir {store.root} has no runs yet")
    report = store.report_path(run_id)
    return Results(
        run_id=run_id,
        workdir=store.root,
        report=report if report.is_file() else None,
        state=info["state"],
        model=info["model"],
        caveat=banner(info["model_trained"], info["model_caveat"]),
    )


@contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    """``name``'s level for the block, then the one it had."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
