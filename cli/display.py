"""Terminal output: query results as tables, banners, the run summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from actalign.queries.runner import Result

# Ids, labels, paths, SQL results and step texts are data: printed as text, never as rich markup ("[/]" would
# crash a finished run's output, "[link=...]" hide text). A styled message passes markup=True and escapes what it quotes.
console = Console(markup=False)
errors = Console(stderr=True)


def print_result(result: Result, title: str | None = None) -> None:
    table = Table(title=title, title_justify="left")
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)


def print_line(text: str) -> None:
    """A line that may hold a path or a command: left whole to the terminal (or the pipe) however long,
    never broken inside a token, so it stays copy-pasteable."""
    console.print(text, highlight=False, soft_wrap=True)


def print_failures(result: Result, title: str) -> None:
    """Failed items as lines rather than a table: the message names a path or a URL, printed whole."""
    console.print(title, highlight=False)
    for stage, item, error_class, message in result.rows:
        print_line(f"  {stage} {item}: {error_class}\n    {message}")


def print_model_banner(banner: str | None) -> None:
    """The model's caveat (untrained, or trained on generated shapes only), when it has one."""
    if banner:
        console.print(Panel(banner, style="bold yellow", title="warning"))


@contextmanager
def working(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner beside ``message`` while something slow runs, so no pause is silent; in a log, the message as a line.

    Yields a function that names the current step (beside the spinner, or as an indented line in a log)."""
    if not console.is_terminal:
        console.print(message, highlight=False)
        yield lambda step: console.print(f"  {step}", highlight=False)
        return
    with console.status(escape(message)) as status:  # a status reads markup whatever the console's default
        yield lambda step: status.update(escape(f"{message} {step}"))


def print_error(message: str) -> None:
    """Only the prefix is styled: ``message`` quotes user input, so it is escaped."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # paths in it stay whole
