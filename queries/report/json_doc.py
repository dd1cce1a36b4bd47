"""The report as JSON, for programs."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from actalign.queries.report.model import Report


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def render_json(report: Report) -> str:
    """Machine-readable: raw values (fractions in 0..1, not %), every row of every table, figure paths."""
    doc = {
        "run_id": report.run_id,
        "title": report.title,
        "banner": report.banner,
        "created_at": report.created_at,
        "configuration": dict(report.summary),
        "config": report.config,
        "method": report.method,
        "tables": {
            t.key: {"title": t.title, "note": t.note, "total_rows": t.total or len(t.rows),
                    "columns": [{"name": c.name, "label": c.label, "kind": c.kind} for c in t.columns], "rows": t.rows}
            for t in report.tables
        },
        "figures": [{"key": f.key, "title": f.title, "path": report.relative(f.path)} for f in report.figures],
        "heatmaps": [{"video_id": h.video_id, "scorer": h.scorer, "paths": [report.relative(p) for p in h.paths], "error": h.error}
                     for h in report.heatmaps],
        "notes": report.notes,
    }
    return json.dumps(_jsonable(doc), indent=2, ensure_ascii=False) + "\n"
