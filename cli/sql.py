"""`actalign sql`: run SQL or a named query against the workdir's views, printed as a table or written as a file.

The table fits a terminal by leaving out the rightmost columns (and saying which) rather than squeezing
headers to one letter; when stdout is not a terminal it is printed at its full width, never wrapped or cut.
"""

from __future__ import annotations

import csv
import io
import json
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from actalign.cli.display import print_error
from actalign.config import DEFAULT_WORKDIR
from actalign.queries.runner import Result
from actalign.storage.atomic import write_text_atomic

# A column needs room for its header, the cell padding and one border; a cell shorter than its header is rare.
_COLUMN_CHROME = 3


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    markdown = "markdown"
    parquet = "parquet"


def sql(
    query: Annotated[Optional[str], typer.Argument(help="SQL over the views (`actalign sql --list` names them).")] = None,
    workdir: Annotated[Path, typer.Option("--workdir", help="Folder holding stores, runs and actalign.duckdb.")] = DEFAULT_WORKDIR,
    named: Annotated[Optional[str], typer.Option("--named", help="Run queries/named/NAME.sql instead of QUERY.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="key=value for --named; a list parameter takes comma-separated values.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the views and the named queries, with what each answers.")] = False,
    output_format: Annotated[Format, typer.Option("--format", help="table (default), csv, json, jsonl, markdown or parquet (needs --out).")] = Format.table,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write to FILE (replaced atomically) instead of printing.")] = None,
) -> None:
    """Run SQL against the workdir's DuckDB views (the same views any DuckDB client sees in actalign.duckdb).

    It only reads: the views are made in a private in-memory database, so it never waits for a run, and a statement that changes them (CREATE OR REPLACE VIEW ...) lasts for this command only."""
    if list_:
        _print_catalogue()
        return
    if (query is None) == (named is None):
        _fail("give either a SQL query or --named NAME (see `actalign sql --list`)")
    if param and named is None:
        _fail("--param is for --named queries")
    if output_format is Format.parquet and out is None:
        _fail("--format parquet writes a file: add --out FILE")
    result = _run(workdir, query, named, param or [])
    if output_format is Format.parquet:
        _write_parquet(result, out)
    elif output_format is Format.table and out is None:
        print_table(result)
    else:
        text = _render(result, output_format)
        if out is None:
            typer.echo(text, nl=False)
        else:
            _write_text(text, out)


def _fail(message: str) -> NoReturn:
    print_error(message)
    raise typer.Exit(2)


def _run(workdir: Path, query: str | None, named: str | None, params: list[str]) -> Result:
    import duckdb

    from actalign.queries.runner import load_named_query, named_queries, run_sql, session
    from actalign.storage.workdir import Workdir

    try:
        if named is None:
            return run_sql(Workdir.open(workdir), query)
        try:
            spec = load_named_query(named)
        except KeyError:
            _fail(f"no named query {named!r}; known: {', '.join(named_queries())}")
        values = _parse_params(params, spec.params, spec.sql, named)
        with session(Workdir.open(workdir)) as s:
            return s.named(named, **values)
    except duckdb.Error as exc:
        print_error(f"query failed: {exc}")
        raise typer.Exit(2) from exc


def _parse_params(pairs: list[str], declared: tuple[str, ...], sql_text: str, name: str) -> dict[str, Any]:
    """key=value strings as DuckDB parameters: a parameter cast to a list (``$runs::VARCHAR[]``) splits on commas,
    one used as a LIMIT is an integer; the rest stay strings (ids are never turned into numbers)."""
    takes = f"named query {name!r} takes {', '.join(declared) or 'no parameters'}"
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in declared:
            _fail(f"--param {pair!r}: {takes}")
        if re.search(rf"\${key}::\w+\[\]", sql_text):
            values[key] = [part.strip() for part in value.split(",") if part.strip()]
        elif re.search(rf"LIMIT\s+\${key}\b", sql_text, re.IGNORECASE):
            if not value.isdigit():
                _fail(f"--param {key}={value!r}: {key} is a row count (a whole number)")
            values[key] = int(value)
        else:
            values[key] = value
    missing = [key for key in declared if key not in values]
    if missing:
        _fail(f"missing --param {', '.join(f'{key}=...' for key in missing)}: {takes}")
    return values


def _print_catalogue() -> None:
    from actalign.queries.runner import first_sentence, load_named_query, named_queries, view_descriptions

    print_table(Result(["view", "what it holds"], list(view_descriptions().items())), title="views", wrap=True)
    queries = Result(["named query", "parameters", "what it answers"], [])
    for name in named_queries():
        spec = load_named_query(name)
        queries.rows.append((name, ", ".join(spec.params), first_sentence(spec.doc.removeprefix(f"{name}:").strip())))
    print_table(queries, title="named queries (actalign sql --named NAME --param key=value)", wrap=True)


def print_table(result: Result, title: str | None = None, wrap: bool = False, console: Console | None = None) -> None:
    """On a terminal: the leading columns that fit, and a note naming the others; elsewhere every column, uncut.

    ``wrap`` lets long cells wrap on a terminal instead of dropping columns (for prose such as descriptions)."""
    console = console or Console(markup=False, highlight=False)  # made now, so it sees the terminal's current width
    cells = [["" if value is None else str(value) for value in row] for row in result.rows]
    columns = list(result.columns)
    natural = [max([len(c)] + [len(row[i]) for row in cells]) + _COLUMN_CHROME for i, c in enumerate(columns)]
    if console.is_terminal and not wrap:
        shown, used = 0, 1
        while shown < len(columns) and used + natural[shown] <= console.width:
            used += natural[shown]
            shown += 1
        shown = max(shown, 1)
    else:
        shown = len(columns)
    table = Table(title=title, title_justify="left")
    for column in columns[:shown]:
        table.add_column(column, overflow="fold" if console.is_terminal else "ignore", no_wrap=not (console.is_terminal and wrap))
    for row in cells:
        table.add_row(*row[:shown])
    if not console.is_terminal:  # a pipe or a file: as wide as the table, so nothing wraps or is cut
        console = Console(file=console.file, markup=False, highlight=False, width=sum(natural) + 1)
    console.print(table)
    if shown < len(columns):
        left_out = columns[shown:]
        console.print(f"{len(left_out)} column(s) left out to fit the terminal: {', '.join(left_out)}")
        console.print("(use --format csv/json/markdown, pipe the output, or SELECT fewer columns to see them)")


def _render(result: Result, output_format: Format) -> str:
    if output_format is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(["" if v is None else v for v in row] for row in result.rows)
        return buffer.getvalue()
    if output_format is Format.json:
        return json.dumps(result.records(), default=str, indent=2) + "\n"
    if output_format is Format.jsonl:
        return "".join(json.dumps(record, default=str) + "\n" for record in result.records())
    if output_format is Format.markdown:
        lines = ["| " + " | ".join(_markdown_cell(c) for c in result.columns) + " |", "|" + "---|" * len(result.columns)]
        lines += ["| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in result.rows]
        return "\n".join(lines) + "\n"
    buffer = io.StringIO()  # a table into a file: the uncut text a pipe receives
    print_table(result, console=Console(file=buffer, markup=False, highlight=False, force_terminal=False))
    return buffer.getvalue()


def _markdown_cell(value: Any) -> str:
    """Data, not Markdown: pipes, backslashes and markup characters escaped, newlines as <br>."""
    text = "" if value is None else str(value)
    text = re.sub(r"([\\`*_{}\[\]<>|#])", r"\\\1", text)
    return text.replace("\r\n", "<br>").replace("\n", "<br>")


def _write_text(text: str, out: Path) -> None:
    write_text_atomic(text, out)
    print(f"wrote {len(text.splitlines())} lines to\n{out}")


def _write_parquet(result: Result, out: Path) -> None:
    import pyarrow as pa

    from actalign.storage.parquet import write_atomic

    table = pa.Table.from_pylist(result.records()) if result.rows else pa.table({c: pa.array([], pa.null()) for c in result.columns})
    write_atomic(table, out)
    print(f"wrote {table.num_rows} rows to\n{out}")
