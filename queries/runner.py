"""Load the view files into the workdir's DuckDB database and run SQL against it.

Views read the Parquet stores by absolute path, so any DuckDB client that
opens ``<workdir>/actalign.duckdb`` sees the same tables as ``actalign sql``.
Every actalign command that writes results refreshes them (after moving a
workdir, run any actalign command once to re-point them).

Named queries live in ``queries/named/<name>.sql``: one SELECT over the views
with DuckDB named parameters (``$run_id``), a header comment saying what it
answers and a ``-- params:`` line naming its parameters. They are not views;
``named_query(workdir, name, **params)`` runs one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

from actalign.storage.workdir import Workdir

SQL_DIR = Path(__file__).parent
NAMED_DIR = SQL_DIR / "named"


def view_sql(root: Path) -> list[str]:
    """The view files in order, with the workdir's path filled in."""
    quoted = str(root).replace("'", "''")
    return [path.read_text(encoding="utf-8").replace("{root}", quoted) for path in sorted(SQL_DIR.glob("*.sql"))]


VERSION_TABLE = "_actalign_views"  # one row: the hash of the view SQL last created in this database
_VIEW_NAME = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)", re.IGNORECASE)


def refresh_views(workdir: Workdir, force: bool = False) -> None:
    """(Re)create every view when the view files or the workdir's path changed (or ``force``).

    Creating a view reads the footer of every Parquet file it covers (``union_by_name``), which
    costs seconds with thousands of score files; views bind again at every query, so new files and
    new columns are seen without re-creating them. The hash of the SQL last created is kept in the
    table ``_actalign_views``.
    """
    statements = view_sql(workdir.root)
    digest = hashlib.sha256("\n;\n".join(statements).encode()).hexdigest()
    names = {name.lower() for statement in statements for name in _VIEW_NAME.findall(statement)}
    with duckdb.connect(str(workdir.db_path)) as con:
        if not force:
            try:
                current = con.execute(f"SELECT sql_hash FROM {VERSION_TABLE}").fetchone()
            except duckdb.CatalogException:
                current = None
            existing = {row[0].lower() for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
            if current and current[0] == digest and names <= existing:
                return
        for statement in statements:
            con.execute(statement)
        con.execute(f"CREATE OR REPLACE TABLE {VERSION_TABLE} AS SELECT ? AS sql_hash, now() AS created_at", [digest])


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]


@dataclass(frozen=True)
class NamedQuery:
    name: str
    doc: str  # the header comment, without the params line
    params: tuple[str, ...]
    sql: str


_PARAMS_LINE = re.compile(r"^--\s*params:\s*(.*)$", re.IGNORECASE)


@cache
def load_named_query(name: str) -> NamedQuery:
    """Read ``queries/named/<name>.sql``; raises KeyError naming the known queries for an unknown name."""
    path = NAMED_DIR / f"{name}.sql"
    if not re.fullmatch(r"[a-z0-9_]+", name) or not path.is_file():
        raise KeyError(f"no named query {name!r}; known: {', '.join(named_queries())}")
    text = path.read_text(encoding="utf-8")
    doc, params = [], ()
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        match = _PARAMS_LINE.match(line)
        if match:
            declared = re.sub(r"\([^)]*\)", "", match.group(1))  # "runs (a list of run ids)" -> "runs"
            params = tuple(p.strip() for p in declared.split(",") if p.strip() and p.strip() != "none")
        else:
            doc.append(line.lstrip("-").strip())
    used = set(re.findall(r"\$([a-z_][a-z0-9_]*)", text))
    if used != set(params):
        raise ValueError(f"{path}: the params line declares {sorted(params)} but the SQL uses {sorted(used)}")
    return NamedQuery(name, " ".join(doc), params, text)


def named_queries() -> list[str]:
    return sorted(p.stem for p in NAMED_DIR.glob("*.sql"))


class Session:
    """One connection with the views refreshed once: several queries without reopening the file."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def sql(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Result:
        cursor = self.con.execute(sql, params) if params else self.con.execute(sql)
        if cursor.description is None:
            return Result([], [])
        return Result([column[0] for column in cursor.description], cursor.fetchall())

    def focus(self, runs: Sequence[str]) -> None:
        """Compute the predictions of ``runs`` once for this session: a temporary table named
        ``predictions`` shadows the view for every later query here (the views and named queries
        included), so a report's dozen queries read the score files once instead of a dozen times.
        From then on this session sees only these runs' predictions."""
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE predictions AS SELECT * FROM main.predictions WHERE list_contains($runs::VARCHAR[], run_id)",
            {"runs": list(dict.fromkeys(runs))},
        )

    def named(self, name: str, **params: Any) -> Result:
        """Run a named query; every declared parameter must be given, and nothing else."""
        query = load_named_query(name)
        missing, unknown = set(query.params) - set(params), set(params) - set(query.params)
        if missing or unknown:
            raise TypeError(
                f"named query {name!r} takes parameters {list(query.params)}; "
                + "; ".join(part for part in (f"missing {sorted(missing)}" if missing else "", f"unknown {sorted(unknown)}" if unknown else "") if part)
            )
        return self.sql(query.sql, {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()} or None)


@contextmanager
def session(workdir: Workdir) -> Iterator[Session]:
    refresh_views(workdir)
    with duckdb.connect(str(workdir.db_path)) as con:
        con.execute("SET parquet_metadata_cache = true")  # several queries over the same files: read each footer once
        yield Session(con)


def run_sql(workdir: Workdir, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Result:
    """Run one statement against the workdir's database, views refreshed first."""
    with session(workdir) as s:
        return s.sql(sql, params)


def named_query(workdir: Workdir, name: str, **params: Any) -> Result:
    """Run ``queries/named/<name>.sql`` with its parameters, e.g.
    ``named_query(workdir, "worst_errors", run_id=run, scorer="actalign", limit=3)``."""
    with session(workdir) as s:
        return s.named(name, **params)
