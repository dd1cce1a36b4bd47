"""Progress bars over Prefect futures, on stderr so stdout stays clean for tables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prefect.futures import PrefectFuture, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def wait_with_progress(futures: Mapping[PrefectFuture, int], description: str) -> None:
    """Block until every future is done, advancing a bar by each future's weight (e.g. its videos)."""
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        bar = progress.add_task(description, total=sum(futures.values()))
        for future in as_completed(list(futures)):
            progress.advance(bar, futures[future])


@contextmanager
def spinner(description: str) -> Iterator[None]:
    """A spinner and the time so far while a step with no countable parts runs (scripts and texts, the views, the report)."""
    columns = (TextColumn("{task.description}", markup=False), SpinnerColumn(finished_text="done"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        step = progress.add_task(description, total=None)
        yield
        progress.update(step, total=1, completed=1)
