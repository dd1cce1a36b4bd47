"""Report stage: a run's results people can trust and read, as Markdown, one self-contained HTML file, or JSON.

One report, three renderings of it (``build_report`` then ``render_markdown`` /
``render_html`` / ``render_json``):

- the run's configuration (model, scorers, fps, smoothing, where the scripts
  came from: the LLM, prompt template and its hash), and the model's banner
  when it is untrained or a toy (``actalign.caveats``); never a secret;
- accuracy top-1/2/3 per scorer with 95 % percentile-bootstrap intervals
  (``queries.stats``), each beside the random baseline of the run's exact mix
  of candidate counts, and how many labelled videos were left out and why;
- a comparison of (run, scorer) rows against a baseline, with paired
  bootstrap intervals of the differences (``--compare``, ``--baseline``);
- accuracy per domain (table and bars), the score-margin histogram (margin =
  the true label's score minus the best other candidate's);
- where two scorers disagree, the worst errors by margin and their alignment
  heatmaps (``tasks.explain.explain_video``).

The flow writes ``runs/<run>/report.md`` with this code (without heatmaps, to
keep runs fast) and publishes the accuracy table and the Markdown as Prefect
artifacts; ``actalign report`` writes any format, with heatmaps, for any run.
Plots use matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never
pyplot's global state.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from actalign.caveats import banner, model_label
from actalign.errors import InputError
from actalign.ids import file_stem
from actalign.queries import stats, tables
from actalign.queries.runner import Result, Session, session
from actalign.scorers import ALIGNMENT_MODES
from actalign.storage.safe_paths import contained
from actalign.storage.workdir import Workdir

FORMATS = ("md", "html", "json")
DEFAULT_WORST = 3  # heatmaps of this many worst errors by margin
MAX_PREDICTIONS = 100  # the per-video predictions table is shown up to this many videos
MAX_DISAGREEMENTS = 25
MAX_WORST_ROWS = 10
MAX_FAILURES = 50
TABLE_ARTIFACT_KEY = "actalign-accuracy"  # Prefect artifact keys: lowercase letters, digits, dashes
MARKDOWN_ARTIFACT_KEY = "actalign-report"

_RENDER_LOCK = threading.Lock()
_SECRET_NAMES = re.compile(r"(api_?key|token|secret|password|cookie|proxy|authorization)", re.IGNORECASE)


# --------------------------------------------------------------------------- the report's content


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


ACCURACY_COLUMNS = [
    Column("scorer", "scorer"),
    Column("n", "scored", "int"),
    Column("n_missing", "left out", "int"),
    Column("top1", "top-1 %", "pct"),
    Column("top1", "95 % CI", "ci"),
    Column("random_top1", "random %", "pct"),
    Column("top2", "top-2 %", "pct"),
    Column("top2", "95 % CI", "ci"),
    Column("random_top2", "random %", "pct"),
    Column("top3", "top-3 %", "pct"),
    Column("top3", "95 % CI", "ci"),
    Column("random_top3", "random %", "pct"),
]
DOMAIN_COLUMNS = [
    Column("domain", "domain"),
    Column("scorer", "scorer"),
    Column("n", "scored", "int"),
    Column("n_missing", "left out", "int"),
    Column("top1", "top-1 %", "pct"),
    Column("top1", "95 % CI", "ci"),
    Column("random_top1", "random %", "pct"),
    Column("top2", "top-2 %", "pct"),
    Column("random_top2", "random %", "pct"),
    Column("top3", "top-3 %", "pct"),
    Column("random_top3", "random %", "pct"),
]
COMPARISON_COLUMNS = [
    Column("run_id", "run"),
    Column("scorer", "scorer"),
    Column("n", "scored", "int"),
    Column("top1", "top-1 %", "pct"),
    Column("random_top1", "random %", "pct"),
    Column("top2", "top-2 %", "pct"),
    Column("top3", "top-3 %", "pct"),
    Column("n_paired", "paired", "int"),
    Column("diff_top1", "Δ top-1 pp [95 % CI]", "diff"),
    Column("diff_top2", "Δ top-2 pp [95 % CI]", "diff"),
    Column("diff_top3", "Δ top-3 pp [95 % CI]", "diff"),
]


def build_report(
    workdir: Workdir,
    run_id: str | None = None,
    *,
    compare: Sequence[str] = (),
    baseline: str | None = None,
    videos: Sequence[str] = (),
    worst: int = DEFAULT_WORST,
    heatmap_scorer: str | None = None,
    out_dir: Path | None = None,
    figures: bool = True,
    final: Mapping[str, Any] | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    level: float = stats.LEVEL,
    progress: Callable[[str], None] = lambda step: None,
) -> Report:
    """Gather everything the report shows; draws its figures into ``<out_dir>/figures``.

    ``run_id``: default the latest run. ``compare``: more runs for the comparison table.
    ``baseline``: ``SCORER`` (of the run) or ``RUN:SCORER``; default the run's mean-pool, else its first
    scorer. ``videos``: draw these videos' heatmaps, else the ``worst`` errors by margin of
    ``heatmap_scorer`` (default actalign, else the run's first alignment scorer). Raises InputError for
    an unknown run, scorer or video. ``final``: record fields (state, finished_at, n_failed) of a run
    that writes its final record only after its report. ``progress`` hears the name of each step as it starts.
    """
    if worst < 0:
        raise InputError(f"--worst must be 0 or more, got {worst}")
    options = dict(resamples=resamples, seed=seed, level=level)
    try:
        stats.check_options(resamples, level)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    with session(workdir) as s:
        run_id = run_id or tables.latest_run(s)
        if run_id is None:
            raise InputError(f"no runs in {workdir.root}; run `actalign run` (or `actalign demo`) first")
        info = {**_run_info(s, workdir, run_id), **(final or {})}
        base_run = (baseline.rpartition(":")[0] if baseline else "") or run_id
        for other in (*compare, base_run):
            _run_info(s, workdir, other)
        s.focus([run_id, *compare, base_run])  # every query below reads these runs' predictions, computed once
        scorers = _scorers(s, run_id)
        base = _baseline(s, workdir, run_id, scorers, baseline)
        heat_scorer = _heatmap_scorer(scorers, heatmap_scorer)
        out_dir = Path(out_dir) if out_dir else contained(workdir.root, workdir.run_dir(run_id))  # every file of the report stays in it
        config = redact(json.loads(info["config"] or "{}"))
        report = Report(
            run_id=run_id,
            title=f"actalign run {run_id}",
            banner=banner(info["model_trained"], info["model_caveat"]),
            created_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            out_dir=out_dir,
            summary=_summary(s, info, config, scorers, workdir),
            config=config,
            method={"intervals": "percentile bootstrap over videos", "resamples": resamples, "seed": seed, "level": level,
                    "ties": "count against the true label", "description": stats.method_note(resamples, seed, level)},
        )
        progress(f"accuracy with {resamples} bootstrap resamples")
        accuracy = tables.accuracy_rows(s, [run_id], **options)
        n_labelled = s.sql("SELECT count(*) FROM videos WHERE run_id = ? AND label IS NOT NULL", [run_id]).rows[0][0]
        report.tables.append(
            Table("accuracy", "Accuracy (labelled videos)", ACCURACY_COLUMNS, accuracy,
                  note=stats.method_note(resamples, seed, level) if n_labelled else "The run has no labelled videos: accuracy needs a label column in the manifest.")
        )
        left_out = tables.left_out_reasons(s, run_id)
        report.tables.append(
            Table(
                "left_out",
                "Videos left out of the accuracy, and why",
                [Column("stage", "stage"), Column("reason", "reason"), Column("videos", "videos", "int"), Column("scorers", "scorers"), Column("example", "example message")],
                left_out.records(),
                note="Labelled videos that a scorer did not score with their label, by the error class of the video's failed status row "
                "(SELECT * FROM left_out for each video)." if left_out.rows else
                "None: every labelled video was scored by every scorer." if n_labelled else "The run has no labelled videos.",
            )
        )
        comparison_rows = [(r, sc) for r in dict.fromkeys([run_id, *compare]) for sc in _scorers(s, r)]
        if base not in comparison_rows:
            comparison_rows.insert(0, base)
        comparison_rows.sort(key=lambda row: row != base)  # the baseline first, the rest in order
        if len(comparison_rows) > 1 and n_labelled:
            progress(f"comparison of {len(comparison_rows)} scorers and runs")
            rows = tables.comparison_rows(s, comparison_rows, base, **options)
            report.tables.append(
                Table(
                    "comparison",
                    f"Comparison with {base[1]} of run {base[0]}",
                    COMPARISON_COLUMNS,
                    rows,
                    note="Δ = the row's top-k minus the baseline's, in percentage points, over the videos both scored (paired by video_id); "
                    f"95 % paired percentile bootstrap, {resamples} resamples, seed {seed}. The top-k columns use each row's own scored videos.",
                )
            )
        progress("accuracy per domain")
        by_domain = tables.accuracy_rows(s, [run_id], by_domain=True, **options)
        report.tables.append(Table("by_domain", "Accuracy per domain", DOMAIN_COLUMNS, by_domain, note="Intervals: as above (top-1)."))
        progress("disagreements, worst errors, predictions and failures")
        if len(scorers) >= 2:
            a = base[1] if base[0] == run_id and base[1] in scorers else scorers[0]
            b = heat_scorer if heat_scorer and heat_scorer != a else next(sc for sc in scorers if sc != a)
            disagree = tables.disagreements(s, run_id, a, b)
            report.tables.append(_disagreement_table(disagree, a, b))
        if heat_scorer:
            worst_rows = tables.worst_errors(s, run_id, heat_scorer, MAX_WORST_ROWS)
            report.tables.append(
                Table(
                    "worst_errors",
                    f"Worst errors of {heat_scorer} by margin",
                    [Column("video_id", "video"), Column("label", "true class"), Column("predicted", "predicted"), Column("true_rank", "true rank", "int"),
                     Column("true_score", "true score", "score"), Column("top_score", "top score", "score"), Column("margin", "margin", "signed")],
                    worst_rows.records(),
                    note="margin = the true class's score minus the best other candidate's score (most negative = worst).",
                )
            )
            chosen = list(dict.fromkeys(videos)) or worst_rows.column("video_id")[:worst]
            if videos:
                _check_videos(s, run_id, heat_scorer, chosen)
            elif worst == 0 and worst_rows.rows:
                report.notes.append(f"Alignment heatmaps of the worst errors: actalign report --workdir {workdir.root} --run {run_id} --format html")
        elif videos:
            raise InputError(f"run {run_id} has no alignment scorer to draw heatmaps with (its scorers: {', '.join(scorers)})")
        else:
            chosen = []
        n_videos = s.sql("SELECT count(*) FROM videos WHERE run_id = ?", [run_id]).rows[0][0]
        if n_videos <= MAX_PREDICTIONS:
            predictions = tables.predictions(s, run_id)
            report.tables.append(_result_table("predictions", "Predictions (* = correct: the true class ranked first; a tie is not a win)", predictions))
        else:
            report.notes.append(f"{n_videos} videos: the per-video predictions are in the predictions view, e.g. "
                                f"actalign sql \"SELECT * FROM predictions WHERE run_id = '{run_id}'\"")
        failures = tables.failures(s, run_id)
        report.tables.append(_result_table("failures", "Failures", failures, limit=MAX_FAILURES))
        margins = tables.margins(s, run_id)
    if figures:
        progress("figures")
        figure_dir = out_dir / "figures"
        if any(row["n"] for row in by_domain):
            report.figures.append(
                FigureFile("by_domain", "Top-1 accuracy per domain", plot_domain_bars(accuracy, by_domain, contained(out_dir, figure_dir / "accuracy-by-domain.png")),
                           "Bars: top-1 accuracy with its 95 % bootstrap interval; dashed black line: the random baseline of the domain's candidate counts.")
            )
        if any(len(v) for v in margins.values()):
            report.figures.append(
                FigureFile("margins", "Score margins", plot_margins(margins, contained(out_dir, figure_dir / "margins.png")),
                           "Margin = the true class's score minus the best other candidate's score, per scored video; right of 0 = ranked first.")
            )
        if heat_scorer:
            progress(f"alignment heatmaps of {len(chosen)} videos")
            report.heatmaps = _draw_heatmaps(workdir, run_id, heat_scorer, chosen, out_dir)
    return report


def _run_info(s: Session, workdir: Workdir, run_id: str) -> dict[str, Any]:
    info = tables.run_info(s, run_id)
    if info is None:
        known = [r[0] for r in s.sql("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 5").rows]
        raise InputError(f"no run {run_id!r} in {workdir.root}" + (f"; latest runs: {', '.join(known)}" if known else "; it holds no runs"))
    return info


def _scorers(s: Session, run_id: str) -> list[str]:
    """The run's configured scorers and any other that has predictions."""
    sql = "SELECT scorer FROM run_scorers WHERE run_id = $1 UNION SELECT DISTINCT scorer FROM predictions WHERE run_id = $1 ORDER BY scorer"
    return [r[0] for r in s.sql(sql, [run_id]).rows]


def _baseline(s: Session, workdir: Workdir, run_id: str, scorers: list[str], baseline: str | None) -> tuple[str, str]:
    if baseline is None:
        if not scorers:
            return (run_id, "mean-pool")
        return (run_id, "mean-pool" if "mean-pool" in scorers else scorers[0])
    run, _, scorer = baseline.rpartition(":")
    run = run or run_id
    _run_info(s, workdir, run)
    known = _scorers(s, run)
    if scorer not in known:
        raise InputError(f"baseline scorer {scorer!r} is not a scorer of run {run} (its scorers: {', '.join(known) or 'none'})")
    return (run, scorer)


def _heatmap_scorer(scorers: list[str], chosen: str | None) -> str | None:
    if chosen is not None:
        if chosen not in ALIGNMENT_MODES:
            raise InputError(f"scorer {chosen!r} has no alignment to draw; choose one of {', '.join(ALIGNMENT_MODES)}")
        if chosen not in scorers:
            raise InputError(f"scorer {chosen!r} did not score this run (its scorers: {', '.join(scorers)})")
        return chosen
    alignment = [sc for sc in scorers if sc in ALIGNMENT_MODES]
    return "actalign" if "actalign" in alignment else (alignment[0] if alignment else None)


def _check_videos(s: Session, run_id: str, scorer: str, videos: list[str]) -> None:
    known = {r[0] for r in s.sql("SELECT video_id FROM predictions WHERE run_id = ? AND scorer = ?", [run_id, scorer]).rows}
    missing = [v for v in videos if v not in known]
    if missing:
        raise InputError(f"video(s) {', '.join(map(repr, missing))} have no {scorer} scores in run {run_id}; "
                         f"check with: actalign sql \"SELECT video_id FROM predictions WHERE run_id = '{run_id}'\"")


def _summary(s: Session, info: dict[str, Any], config: dict[str, Any], scorers: list[str], workdir: Workdir) -> list[tuple[str, str]]:
    def when(value) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "?"

    labelled = s.sql("SELECT count(*) FILTER (WHERE label IS NOT NULL), count(*) FROM videos WHERE run_id = ?", [info["run_id"]]).rows[0]
    lines = [
        ("run", f"{info['run_id']} ({info['state']}; started {when(info['started_at'])}, finished {when(info['finished_at'])})"),
        ("videos", f"{labelled[1]} ({labelled[0]} labelled), {info['n_failed'] or 0} failed item(s)"),
        ("model", f"{info['model']} ({model_label(info['model_trained'], info['model_caveat'])})"),
        ("scorers", ", ".join(scorers) or "(none)"),
        ("fps", str(config.get("fps", "?"))),
        ("smoothing", str(config.get("smoothing", 0)) + " (moving-average width over frames for the alignment scorers; 0 or 1: none)"),
    ]
    provider = config.get("provider", "file")
    if provider == "file":
        lines.append(("scripts", "hand-written (the classes file)"))
    else:
        llm = config.get("llm") or {}
        lines.append(("scripts", f"{provider}: model {llm.get('model', '?')}, prompt {llm.get('prompt', '?')}, temperature {llm.get('temperature', '?')}, "
                                 f"granularity {llm.get('granularity', '?')}; classes with steps in the classes file keep them"))
        used = tables.run_scripts(s, info["run_id"]).records()
        for row in used:
            lines.append(("prompt template", f"{row['template']} (hash {row['template_hash']}), LLM {row['model']}: {row['classes']} class(es)"))
        if not used:
            lines.append(("prompt template", "no LLM-written script was used"))
    lines.append(("text templates", f"step {config.get('step_template', '?')!r}, class name {config.get('name_template', '?')!r}"))
    source = config.get("benchmark") or config.get("videos")
    if source:
        lines.append(("videos from", str(source)))
    lines.append(("workdir", str(workdir.root)))
    return lines


def _disagreement_table(result: Result, a: str, b: str) -> Table:
    rows = result.records()
    columns = [
        Column("video_id", "video"), Column("domain", "domain"), Column("label", "true class"), Column("right", "right"),
        Column("predicted_a", f"{a}: predicted"), Column("true_score_a", f"{a}: true score", "score"), Column("top_score_a", f"{a}: top score", "score"),
        Column("margin_a", f"{a}: margin", "signed"),
        Column("predicted_b", f"{b}: predicted"), Column("true_score_b", f"{b}: true score", "score"), Column("top_score_b", f"{b}: top score", "score"),
        Column("margin_b", f"{b}: margin", "signed"),
    ]
    won = {name: sum(r["right"] == name for r in rows) for name in (a, b, "neither", "no label")}
    note = (f"{len(rows)} video(s) where {a} and {b} disagree: {won[b]} only {b} gets right, {won[a]} only {a}, {won['neither']} neither"
            + (f", {won['no label']} without a label" if won["no label"] else "") + ". Scores are each scorer's own (scales differ between scorers).")
    shown = rows[:MAX_DISAGREEMENTS]
    return Table("disagreements", f"Where {a} and {b} disagree", columns, shown, note=note, total=len(rows) if len(rows) > len(shown) else None)


def _result_table(key: str, title: str, result: Result, limit: int | None = None) -> Table:
    rows = result.records()
    shown = rows[:limit] if limit else rows
    return Table(key, title, [Column(c, c) for c in result.columns], shown, total=len(rows) if len(rows) > len(shown) else None)


def redact(value: Any, name: str = "") -> Any:
    """The configuration without secrets: values of secret-looking keys, and URL credentials and queries."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    if _SECRET_NAMES.search(name) and value not in (None, "", False) and not name.endswith("_env"):
        return "[redacted]"
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.username or parts.password or parts.query:
            host = parts.hostname or ""
            netloc = host + (f":{parts.port}" if parts.port else "")
            return urlunsplit((parts.scheme, netloc, parts.path, "[redacted]" if parts.query else "", ""))
    return value


# --------------------------------------------------------------------------- figures


def plot_domain_bars(accuracy: list[dict[str, Any]], by_domain: list[dict[str, Any]], out: Path) -> Path:
    """Horizontal bars of top-1 accuracy per domain and scorer (all domains first), bootstrap intervals
    as error bars, and the random baseline as a dashed black line."""
    scorers = sorted({r["scorer"] for r in by_domain})
    groups = ["all domains"] + sorted({r["domain"] for r in by_domain})
    value = {(r["scorer"], r["domain"]): r for r in by_domain}
    value.update({(r["scorer"], "all domains"): r for r in accuracy})
    bar_h = 0.8 / max(1, len(scorers))
    height = min(60.0, 1.6 + len(groups) * max(0.45, 0.28 * len(scorers)))
    colours = ["#7f7f7f", "#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828"]
    with _RENDER_LOCK:
        fig = Figure(figsize=(9.0, height), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for j, scorer in enumerate(scorers):
            ys, xs, lo, hi = [], [], [], []
            for i, group in enumerate(groups):
                row = value.get((scorer, group))
                if not row or row["top1"] is None:
                    continue
                ys.append(i + (j - (len(scorers) - 1) / 2) * bar_h)
                xs.append(100 * row["top1"])
                lo.append(100 * (row["top1"] - row["top1_boot_lo"]))
                hi.append(100 * (row["top1_boot_hi"] - row["top1"]))
            ax.barh(ys, xs, height=bar_h * 0.9, color=colours[j % len(colours)], label=scorer,
                    xerr=[lo, hi], error_kw={"ecolor": "black", "elinewidth": 0.8, "capsize": 2})
        for i, group in enumerate(groups):
            randoms = [value[(sc, group)]["random_top1"] for sc in scorers if (sc, group) in value and value[(sc, group)]["random_top1"] is not None]
            if randoms:
                ax.plot([100 * randoms[0]] * 2, [i - 0.46, i + 0.46], color="black", linewidth=1.6, linestyle=(0, (3, 1.5)), zorder=4,
                        label="random baseline" if i == 0 else None)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([_literal(g) for g in groups], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("top-1 accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
        ax.set_title("Top-1 accuracy per domain (95 % bootstrap intervals)", fontsize=11)
        _save_atomically(fig, out)
        fig.clear()
    return out


def plot_margins(margins: dict[str, np.ndarray], out: Path) -> Path:
    """One histogram per scorer of margin = true score minus best other score; bars right of 0 (ranked
    first) in green, the rest in red."""
    scorers = sorted(margins)
    with _RENDER_LOCK:
        fig = Figure(figsize=(9.0, 1.2 + 2.2 * len(scorers)), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(scorers), 1, squeeze=False)[:, 0]
        for ax, scorer in zip(axes, scorers):
            values = margins[scorer]
            if values.size == 0:
                ax.text(0.5, 0.5, "no margins", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(scorer, fontsize=10, loc="left")
                continue
            bins = int(np.clip(math.sqrt(values.size) * 2, 10, 60))
            span = max(abs(float(values.min())), abs(float(values.max())), 1e-12)
            edges = np.linspace(-span, span, bins + 1)
            counts, _ = np.histogram(values, bins=edges)
            centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
            ax.bar(centres, counts, width=widths, color=np.where(centres > 0, "#2e7d32", "#c62828"), edgecolor="white", linewidth=0.3)
            ax.axvline(0, color="black", linewidth=1.0)
            first = float((values > 0).mean())
            ax.set_title(f"{_literal(scorer)}: {values.size} videos, {100 * first:.1f} % with margin > 0 (ranked first)", fontsize=10, loc="left")
            ax.set_ylabel("videos")
        axes[-1].set_xlabel("margin = true class score - best other candidate's score (each scorer's own scale)")
        _save_atomically(fig, out)
        fig.clear()
    return out


def _draw_heatmaps(workdir: Workdir, run_id: str, scorer: str, videos: list[str], out_dir: Path) -> list[Heatmaps]:
    """Each video's heatmaps in ``<out_dir>/figures/heatmaps/<file_stem(video)>``."""
    from actalign.tasks.explain import (
        explain_video,  # the heatmaps of `actalign explain`, reused
    )

    drawn = []
    for video in videos:
        caption = f"video {video}: {scorer} alignment of every candidate (steps x frames, path in red)"
        try:
            paths = explain_video(workdir, video, run_id, scorer, contained(out_dir, out_dir / "figures" / "heatmaps" / file_stem(video)))
            drawn.append(Heatmaps(video, scorer, caption, paths))
        except Exception as exc:  # a report still renders when one picture cannot be drawn; it says why
            drawn.append(Heatmaps(video, scorer, caption, error=f"{type(exc).__name__}: {exc}"))
    return drawn


def _literal(text: str) -> str:
    return str(text).replace("$", r"\$")


def _save_atomically(fig: Figure, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the figures from anyone else who reads the report
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100, facecolor="white")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- rendering


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


_MD_SPECIAL = re.compile(r"([\\\[\]|])")


def _md_escape(text: str) -> str:
    """Data (ids, labels, step texts, paths) as literal text on one line: HTML as entities (raw HTML runs in
    Markdown viewers), ``[`` ``]`` (links, images), ``|`` (cells) and ``\\`` backslash-escaped."""
    return " ".join(_MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)).split())


def markdown_table(table: Table | Result) -> str:
    if isinstance(table, Result):
        table = _result_table("result", "", table)
    if not table.rows:
        return "_(no rows)_"
    lines = ["| " + " | ".join(_md_escape(c.label) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_md_escape(cell(row, c)) for c in table.columns) + " |" for row in table.rows]
    if table.total:
        lines.append(f"\n_{len(table.rows)} of {table.total} rows shown._")
    return "\n".join(lines)


def render_markdown(report: Report, *, images: bool = True) -> str:
    """The report as Markdown; figures as image links relative to ``report.out_dir`` (``images=False``:
    their paths as text, e.g. for a Prefect artifact, which cannot show local files)."""

    def image(path: Path, alt: str) -> str:
        rel = _relative(path, report.out_dir)
        return f"![{_md_escape(alt)}]({rel})" if images else f"_(figure: {_md_escape(str(path))})_"

    parts = [f"# {_md_escape(report.title)}"]
    if report.banner:
        parts.append(f"> **{_md_escape(report.banner)}**")
    parts.append("## Configuration\n\n" + "\n".join(f"- **{_md_escape(k)}**: {_md_escape(v)}" for k, v in report.summary))
    for table in report.tables:
        parts.append(f"## {_md_escape(table.title)}")
        parts.append(markdown_table(table))
        if table.note:
            parts.append(f"_{_md_escape(table.note)}_")
        parts += [image(f.path, f.title) for f in report.figures if f.after == table.key]
        if table.key == "worst_errors" and report.heatmaps:
            parts.append("### Alignment heatmaps")
            for heat in report.heatmaps:
                parts.append(f"**{_md_escape(heat.caption)}**" + (f"\n\n_not drawn: {_md_escape(heat.error)}_" if heat.error else ""))
                parts += [image(p, f"{heat.video_id} {p.stem}") for p in heat.paths]
    parts += [f"_{_md_escape(note)}_" for note in report.notes]
    parts.append("## Full configuration\n\n```json\n" + json.dumps(report.config, indent=2, sort_keys=True, default=str) + "\n```")
    parts.append(f"_Generated {report.created_at} by actalign._")
    return "\n\n".join(parts) + "\n"


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
        "figures": [{"key": f.key, "title": f.title, "path": _relative(f.path, report.out_dir)} for f in report.figures],
        "heatmaps": [{"video_id": h.video_id, "scorer": h.scorer, "paths": [_relative(p, report.out_dir) for p in h.paths], "error": h.error}
                     for h in report.heatmaps],
        "notes": report.notes,
    }
    return json.dumps(_jsonable(doc), indent=2, ensure_ascii=False) + "\n"


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return str(path)


RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json}


def write_files(report: Report, formats: Sequence[str] = ("md",)) -> dict[str, Path]:
    """Write ``<out_dir>/report.<format>`` for each format (atomically); returns format -> path."""
    unknown = [f for f in formats if f not in RENDERERS]
    if unknown:
        raise InputError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
    report.out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in dict.fromkeys(formats):
        path = contained(report.out_dir, report.out_dir / f"report.{fmt}")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(RENDERERS[fmt](report), encoding="utf-8")
        tmp.replace(path)
        written[fmt] = path
    return written


def write_report(workdir: Workdir, run_id: str | None = None, *, formats: Sequence[str] = ("md",), **options: Any) -> dict[str, Path]:
    """Build the report (``build_report``'s options) and write it in each format; returns format -> path."""
    return write_files(build_report(workdir, run_id, **options), formats)


# --------------------------------------------------------------------------- Prefect artifacts


def artifact_table(report: Report) -> list[dict[str, Any]]:
    """The accuracy table for a Prefect table artifact: one dict per scorer, values in %; the UI renders each
    string cell as Markdown, so strings are escaped."""
    table = report.table("accuracy")
    rows = []
    for row in table.rows if table else []:
        item: dict[str, Any] = {"run": report.run_id, "scorer": row["scorer"], "scored": row["n"], "left out": row["n_missing"]}
        for k in stats.TOPK:
            item[f"top-{k} %"] = _round_pct(row[f"top{k}"])
            item[f"top-{k} 95% CI"] = cell(row, Column(f"top{k}", "", "ci"))
            item[f"random top-{k} %"] = _round_pct(row[f"random_top{k}"])
        rows.append({key: _md_escape(value) if isinstance(value, str) else value for key, value in item.items()})
    return rows


def _round_pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def artifact_description(report: Report) -> str:
    model = dict(report.summary).get("model", "?")
    text = _md_escape(f"actalign run {report.run_id} · model {model} · {report.method['description']}")
    return f"**{_md_escape(report.banner)}**\n\n{text}" if report.banner else text


def publish_artifacts(report: Report) -> tuple[Any, Any]:
    """Create the table and Markdown artifacts (inside a flow or task run); returns their ids."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    description = artifact_description(report)
    table_id = create_table_artifact(table=artifact_table(report), key=TABLE_ARTIFACT_KEY, description=description)
    markdown_id = create_markdown_artifact(markdown=render_markdown(report, images=False), key=MARKDOWN_ARTIFACT_KEY, description=description)
    return table_id, markdown_id
