"""The report as Markdown, with every piece of data escaped to show as literal text."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from actalign.queries.report.model import Report, Table, cell

_MD_SPECIAL = re.compile(r"([\\\[\]|])")


def escape_markdown(text: str) -> str:
    """Data (ids, labels, step texts, paths) as literal text on one line: HTML as entities (raw HTML runs in
    Markdown viewers), ``[`` ``]`` (links, images), ``|`` (cells) and ``\\`` backslash-escaped."""
    return " ".join(_MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)).split())


def markdown_table(table: Table) -> str:
    if not table.rows:
        return "_(no rows)_"
    lines = ["| " + " | ".join(escape_markdown(c.label) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(escape_markdown(cell(row, c)) for c in table.columns) + " |" for row in table.rows]
    if table.total:
        lines.append(f"\n_{len(table.rows)} of {table.total} rows shown._")
    return "\n".join(lines)


def render_markdown(report: Report, *, images: bool = True) -> str:
    """The report as Markdown; figures as image links relative to ``report.out_dir`` (``images=False``:
    their paths as text, e.g. for a Prefect artifact, which cannot show local files)."""

    def image(path: Path, alt: str) -> str:
        rel = report.relative(path)
        return f"![{escape_markdown(alt)}]({rel})" if images else f"_(figure: {escape_markdown(str(path))})_"

    parts = [f"# {escape_markdown(report.title)}"]
    if report.banner:
        parts.append(f"> **{escape_markdown(report.banner)}**")
    parts.append("## Configuration\n\n" + "\n".join(f"- **{escape_markdown(k)}**: {escape_markdown(v)}" for k, v in report.summary))
    for table in report.tables:
        parts.append(f"## {escape_markdown(table.title)}")
        parts.append(markdown_table(table))
        if table.note:
            parts.append(f"_{escape_markdown(table.note)}_")
        parts += [image(f.path, f.title) for f in report.figures if f.after == table.key]
        if table.key == "worst_errors" and report.heatmaps:
            parts.append("### Alignment heatmaps")
            for heat in report.heatmaps:
                parts.append(f"**{escape_markdown(heat.caption)}**" + (f"\n\n_not drawn: {escape_markdown(heat.error)}_" if heat.error else ""))
                parts += [image(p, f"{heat.video_id} {p.stem}") for p in heat.paths]
    parts += [f"_{escape_markdown(note)}_" for note in report.notes]
    parts.append("## Full configuration\n\n```json\n" + json.dumps(report.config, indent=2, sort_keys=True, default=str) + "\n```")
    parts.append(f"_Generated {report.created_at} by actalign._")
    return "\n\n".join(parts) + "\n"
