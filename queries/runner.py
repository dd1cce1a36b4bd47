"""Load the view files into the workdir's DuckDB database and run SQL against it.

Views read the Parquet stores by absolute path, so any DuckDB client that
opens ``<workdir>/actalign.duckdb`` sees the same tables as ``actalign sql``.
Every actalign command that writes results refreshes them (after moving a
workdir, run any actalign command once to re-point them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from storage.workdir import Workdir

SQL_DIR = Path(__file__).parent


def view_sql(root: Path) -> list[str]:
    """The view files in order, with the workdir's path filled in."""
    quoted = str(root).replace("'", "''")
    return [path.read_text(encoding="utf-8").replace("{root}", quoted) for path in sorted(SQL_DIR.glob("*.sql"))]


def refresh_views(workdir: Workdir) -> None:
    """(Re)create every view; cheap, since views store no data."""
    with duckdb.connect(str(workdir.db_path)) as con:
        for statement in view_sql(workdir.root):
            con.execute(statement)


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_sql(workdir: Workdir, sql: str, params: Sequence[Any] | None = None) -> Result:
    """Run one statement against the workdir's database, views refreshed first."""
    refresh_views(workdir)
    with duckdb.connect(str(workdir.db_path)) as con:
        cursor = con.execute(sql, params) if params else con.execute(sql)
        if cursor.description is None:
            return Result([], [])
        return Result([column[0] for column in cursor.description], cursor.fetchall())
