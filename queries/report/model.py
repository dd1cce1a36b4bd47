"""The report's content, which every rendering shows: tables of typed columns, figure files, heatmaps and notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from actalign.queries.runner import Result


@dataclass(frozen=True)
class Column:
    """``kind``: text, int, pct (a fraction shown in %), ci (reads ``<name>_boot_lo/_hi``),
    diff (reads ``<name>``, ``<name>_lo``, ``<name>_hi``; percentage points), score, signed."""

    name: str
    label: str
    kind: str = "text"


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    note: str | None = None
    total: int | None = None  # rows before truncation, when truncated


@dataclass
class FigureFile:
    key: str
    title: str
    path: Path
    caption: str = ""
    after: str = "by_domain"  # shown after this table


@dataclass
class Heatmaps:
    video_id: str
    scorer: str
    caption: str
    paths: list[Path] = field(default_factory=list)
    error: str | None = None


@dataclass
class Report:
    run_id: str
    title: str
    banner: str | None
    created_at: str
    out_dir: Path
    summary: list[tuple[str, str]]  # configuration, as (what, value) lines
    config: dict[str, Any]  # the run's full configuration, secrets redacted
    method: dict[str, Any]  # how the intervals were computed
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    heatmaps: list[Heatmaps] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, key: str) -> Table | None:
        return next((t for t in self.tables if t.key == key), None)

    def relative(self, path: Path) -> str:
        """``path`` relative to the report's folder, as the report links it; else ``path`` as given."""
        try:
            return Path(path).resolve().relative_to(Path(self.out_dir).resolve()).as_posix()
        except ValueError:
            return str(path)


def result_table(key: str, title: str, result: Result, limit: int | None = None) -> Table:
    rows = result.records()
    shown = rows[:limit] if limit else rows
    return Table(key, title, [Column(c, c) for c in result.columns], shown, total=len(rows) if len(rows) > len(shown) else None)


def cell(row: dict[str, Any], column: Column) -> str:
    """A table cell as text."""
    value = row.get(column.name)
    kind = column.kind
    if kind == "ci":
        lo, hi = row.get(f"{column.name}_boot_lo"), row.get(f"{column.name}_boot_hi")
        return "" if lo is None or hi is None else f"{100 * lo:.1f}–{100 * hi:.1f}"
    if kind == "diff":
        if row.get("baseline"):
            return "baseline"
        lo, hi = row.get(f"{column.name}_lo"), row.get(f"{column.name}_hi")
        return "" if value is None else f"{100 * value:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    if value is None:
        return ""
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind == "int":
        return str(int(value))
    if kind == "score":
        return f"{value + 0.0:.4g}"  # + 0.0: no "-0"
    if kind == "signed":
        return f"{value:+.3g}"
    if isinstance(value, float):
        return f"{value + 0.0:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
