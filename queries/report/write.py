"""The report's entry point: build a run's report and write its files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actalign.errors import InputError
from actalign.queries.report.build import build_report
from actalign.queries.report.html_page import render_html
from actalign.queries.report.json_doc import render_json
from actalign.queries.report.markdown import render_markdown
from actalign.queries.report.model import Report
from actalign.storage.atomic import write_text_atomic
from actalign.storage.safe_paths import contained
from actalign.storage.workdir import Workdir

RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json}
FORMATS = tuple(RENDERERS)


def write_files(report: Report, formats: Sequence[str] = ("md",)) -> dict[str, Path]:
    """Write ``<out_dir>/report.<format>`` for each format (atomically); returns format -> path."""
    unknown = [f for f in formats if f not in RENDERERS]
    if unknown:
        raise InputError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
    report.out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in dict.fromkeys(formats):
        written[fmt] = write_text_atomic(RENDERERS[fmt](report), contained(report.out_dir, report.out_dir / f"report.{fmt}"))
    return written


def write_report(workdir: Workdir, run_id: str | None = None, *, formats: Sequence[str] = ("md",), **options: Any) -> dict[str, Path]:
    """Build the report (``build_report``'s options) and write it in each format; returns format -> path."""
    return write_files(build_report(workdir, run_id, **options), formats)
