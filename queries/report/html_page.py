"""The report as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from actalign.queries.report.model import Report, Table, cell

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#1d1d1f;background:#fff}
h1{font-size:24px;margin:0 0 12px}h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid #e0e0e0;padding-bottom:4px}h3{font-size:16px}
.banner{background:#fff3cd;border:3px solid #d32f2f;color:#7f0000;font-weight:bold;padding:12px 16px;margin:12px 0;font-size:16px}
table.data{border-collapse:collapse;font-size:12.5px;margin:6px 0}
table.data th{background:#eceff1;text-align:left;vertical-align:bottom;padding:4px 8px;border:1px solid #cfd8dc;max-width:150px}
table.data td{padding:3px 8px;border:1px solid #e0e0e0;white-space:nowrap}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.data tr:nth-child(even) td{background:#fafafa}
table.data tr.baseline td{background:#e3f2fd}
.note{color:#555;font-size:12px;max-width:1100px;margin:4px 0 12px}
dl.config{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:14px}dl.config dt{font-weight:bold}dl.config dd{margin:0}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;color:#555}
.heatmaps{display:flex;flex-wrap:wrap;gap:10px}.heatmaps img{max-width:calc(50% - 6px)}
pre{background:#f5f5f5;padding:10px;font-size:12px;overflow:auto}
.scroll{overflow-x:auto}
"""


def _html_table(table: Table) -> str:
    if not table.rows:
        return '<p class="note">(no rows)</p>'
    numeric = {"int", "pct", "ci", "diff", "score", "signed"}
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cls = ' class="baseline"' if row.get("baseline") else ""
        cells = "".join(f'<td class="num">{html.escape(cell(row, c))}</td>' if c.kind in numeric else f"<td>{html.escape(cell(row, c))}</td>" for c in table.columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    more = f'<p class="note">{len(table.rows)} of {table.total} rows shown.</p>' if table.total else ""
    return f'<div class="scroll"><table class="data" id="table-{html.escape(table.key)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(report: Report) -> str:
    """One self-contained HTML page: CSS inline, images as base64 data URIs, no script, no server."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
    ]
    if report.banner:
        out.append(f'<div class="banner" id="model-banner">{e(report.banner)}</div>')
    out.append('<h2>Configuration</h2><dl class="config">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in report.summary) + "</dl>")

    def figure(path: Path, title: str, caption: str) -> str:
        return f'<figure><img src="{_data_uri(path)}" alt="{e(title)}"><figcaption>{e(caption or title)}</figcaption></figure>'

    for table in report.tables:
        out.append(f"<h2>{e(table.title)}</h2>{_html_table(table)}")
        if table.note:
            out.append(f'<p class="note">{e(table.note)}</p>')
        out += [figure(f.path, f.title, f.caption) for f in report.figures if f.after == table.key]
        if table.key == "worst_errors" and report.heatmaps:
            out.append("<h3>Alignment heatmaps</h3>")
            for heat in report.heatmaps:
                out.append(f"<p><b>{e(heat.caption)}</b></p>")
                if heat.error:
                    out.append(f'<p class="note">not drawn: {e(heat.error)}</p>')
                out.append('<div class="heatmaps">' + "".join(f'<img src="{_data_uri(p)}" alt="{e(heat.video_id)} {e(p.stem)}">' for p in heat.paths) + "</div>")
    out += [f'<p class="note">{e(note)}</p>' for note in report.notes]
    config = json.dumps(report.config, indent=2, sort_keys=True, default=str)
    out.append(f"<h2>Full configuration</h2><details><summary>run configuration (JSON)</summary><pre>{e(config)}</pre></details>")
    out.append(f'<p class="note">Generated {e(report.created_at)} by actalign.</p></body></html>')
    return "\n".join(out) + "\n"
