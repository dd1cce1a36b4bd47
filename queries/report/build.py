"""Gather what a run's report shows from the DuckDB views, with intervals from ``queries.stats``, and draw its figures."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actalign.caveats import banner, model_label
from actalign.errors import InputError
from actalign.queries import stats, tables
from actalign.queries.report.figures import draw_heatmaps, plot_domain_bars, plot_margins
from actalign.queries.report.model import Column, FigureFile, Report, Table, result_table
from actalign.queries.report.redact import redact
from actalign.queries.runner import Result, Session, sql_command
from actalign.scorers import ALIGNMENT_MODES
from actalign.storage.safe_paths import contained
from actalign.storage.workdir import Workdir

DEFAULT_WORST = 3  # heatmaps of this many worst errors by margin
MAX_PREDICTIONS = 100  # the per-video predictions table is shown up to this many videos
MAX_DISAGREEMENTS = 25
MAX_WORST_ROWS = 10
MAX_FAILURES = 50

ACCURACY_COLUMNS = [
    Column("scorer", "scorer"),
    Column("n", "scored", "int"),
    Column("n_missing", "left out", "int"),
    Column("top1", "top-1 %", "pct"),
    Column("top1", "95 % bootstrap CI", "ci"),
    Column("random_top1", "random %", "pct"),
    Column("top2", "top-2 %", "pct"),
    Column("top2", "95 % bootstrap CI", "ci"),
    Column("random_top2", "random %", "pct"),
    Column("top3", "top-3 %", "pct"),
    Column("top3", "95 % bootstrap CI", "ci"),
    Column("random_top3", "random %", "pct"),
]
DOMAIN_COLUMNS = [Column("domain", "domain"), *(c for c in ACCURACY_COLUMNS if c.kind != "ci" or c.name == "top1")]  # intervals of top-1 only
COMPARISON_COLUMNS = [
    Column("run_id", "run"),
    Column("scorer", "scorer"),
    Column("n", "scored", "int"),
    Column("top1", "top-1 %", "pct"),
    Column("random_top1", "random %", "pct"),
    Column("top2", "top-2 %", "pct"),
    Column("top3", "top-3 %", "pct"),
    Column("n_paired", "paired", "int"),
    Column("diff_top1", "Δ top-1 pp [95 % bootstrap CI]", "diff"),
    Column("diff_top2", "Δ top-2 pp [95 % bootstrap CI]", "diff"),
    Column("diff_top3", "Δ top-3 pp [95 % bootstrap CI]", "diff"),
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
    db: Session | None = None,
) -> Report:
    """Gather everything the report shows; draws its figures into ``<out_dir>/figures``.

    ``run_id``: default the latest run. ``compare``: more runs for the comparison table.
    ``baseline``: ``SCORER`` (of the run) or ``RUN:SCORER``; default the run's mean-pool, else its first
    scorer. ``videos``: draw these videos' heatmaps, else the ``worst`` errors by margin of
    ``heatmap_scorer`` (default actalign, else the run's first alignment scorer). Raises InputError for
    an unknown run, scorer or video. ``final``: record fields (state, finished_at, n_failed) of a run
    that writes its final record only after its report. ``progress`` hears the name of each step as it starts.
    ``db``: a session to ask in (it then sees only the runs of this report), else one of its own.
    """
    if worst < 0:
        raise InputError(f"--worst must be 0 or more, got {worst}")
    options = dict(resamples=resamples, seed=seed, level=level)
    try:
        stats.check_options(resamples, level)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    with tables.open_source(db or workdir) as s:
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
                _check_videos(s, run_id, heat_scorer, chosen, workdir)
            elif worst == 0 and worst_rows.rows:
                report.notes.append(f"Alignment heatmaps of the worst errors: actalign report --workdir {workdir.root} --run {run_id} --format html")
        elif videos:
            raise InputError(f"run {run_id} has no alignment scorer to draw heatmaps with (its scorers: {', '.join(scorers)})")
        else:
            chosen = []
        n_videos = s.sql("SELECT count(*) FROM videos WHERE run_id = ?", [run_id]).rows[0][0]
        if n_videos <= MAX_PREDICTIONS:
            predictions = tables.predictions(s, run_id)
            report.tables.append(result_table("predictions", tables.PREDICTIONS_TITLE[tables.has_labels(s, run_id)], predictions))
        else:
            report.notes.append(f"{n_videos} videos: the per-video predictions are in the predictions view, e.g. "
                                + sql_command(workdir.root, f"SELECT * FROM predictions WHERE run_id = '{run_id}'"))
        failures = tables.failures(s, run_id)
        report.tables.append(result_table("failures", "Failures", failures, limit=MAX_FAILURES))
        margins = tables.margins(s, run_id)
    if figures:
        progress("figures")
        figure_dir, drawn = out_dir / "figures", workdir.figure_cache_dir
        if any(row["n"] for row in by_domain):
            report.figures.append(
                FigureFile("by_domain", "Top-1 accuracy per domain", plot_domain_bars(accuracy, by_domain, contained(out_dir, figure_dir / "accuracy-by-domain.png"), drawn),
                           "Bars: top-1 accuracy with its 95 % bootstrap interval; dashed black line: the random baseline of the domain's candidate counts.")
            )
        if any(len(v) for v in margins.values()):
            report.figures.append(
                FigureFile("margins", "Score margins", plot_margins(margins, contained(out_dir, figure_dir / "margins.png"), drawn),
                           "Margin = the true class's score minus the best other candidate's score, per scored video; right of 0 = ranked first.")
            )
        if heat_scorer:
            progress(f"alignment heatmaps of {len(chosen)} videos")
            report.heatmaps = draw_heatmaps(workdir, run_id, heat_scorer, chosen, out_dir)
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


def _check_videos(s: Session, run_id: str, scorer: str, videos: list[str], workdir: Workdir) -> None:
    known = {r[0] for r in s.sql("SELECT video_id FROM predictions WHERE run_id = ? AND scorer = ?", [run_id, scorer]).rows}
    missing = [v for v in videos if v not in known]
    if missing:
        raise InputError(f"video(s) {', '.join(map(repr, missing))} have no {scorer} scores in run {run_id}; "
                         "check the ids with:\n  " + sql_command(workdir.root, f"SELECT video_id FROM predictions WHERE run_id = '{run_id}'"))


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

