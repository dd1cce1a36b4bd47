"""The sweep report: every arm on the select and held-out splits with bootstrap intervals, paired
differences against the baseline arm (Holm-corrected), exploratory per-domain winners, and the chosen
arm's configuration as a file `actalign run --config` takes. Markdown, HTML and JSON through the run
report's renderers; written to ``sweeps/<sweep_id>/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from actalign.config import with_absolute_paths
from actalign.queries import stats
from actalign.queries.report.html_page import render_html
from actalign.queries.report.json_doc import render_json
from actalign.queries.report.markdown import render_markdown
from actalign.queries.report.model import Column, Report, Table
from actalign.queries.report.redact import redact
from actalign.queries.runner import session
from actalign.storage.atomic import write_text_atomic
from actalign.storage.sweeps import sweep_dir
from actalign.storage.workdir import Workdir
from actalign.sweep.grid import Arm, Grid
from actalign.sweep.selection import HELD_OUT, SELECT, bucket_counts, choose, holm, pair_counts, sign_test, split_of, top1

RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json}
CHOSEN_CONFIG = "chosen-config.yaml"


def arm_scorer(grid: Grid, arm: Arm) -> str:
    """The scorer an arm is judged by: the grid's ``scorer`` when the arm runs it, else actalign, else its first."""
    scorers = arm.config.scorers
    return next(name for name in (grid.scorer, "actalign", scorers[0]) if name in scorers)


@dataclass(frozen=True)
class ArmResult:
    arm: str
    select: stats.TopK
    held_out: stats.TopK
    diff: stats.TopK | None  # held-out, paired against the baseline; None for the baseline itself
    p: float | None  # exact McNemar p-value of the held-out top-1 difference
    p_holm: float | None


def judge(
    ranks: Mapping[str, Mapping[str, int]], splits: Mapping[str, str], baseline: str, *, resamples: int = stats.RESAMPLES, seed: int = stats.SEED
) -> tuple[str, dict[str, ArmResult]]:
    """The arm chosen on the select split, and every arm on both splits.

    ``ranks``: arm -> video -> rank of the true label; ``splits``: video -> select or held_out.
    """
    on = {name: {arm: {v: r for v, r in by_video.items() if splits.get(v) == name} for arm, by_video in ranks.items()} for name in (SELECT, HELD_OUT)}
    chosen = choose({arm: top1(list(on[SELECT][arm].values())) for arm in ranks})
    base = on[HELD_OUT].get(baseline, {})
    p_values = {arm: sign_test(on[HELD_OUT][arm], base) for arm in ranks if arm != baseline}
    adjusted = holm(p_values)
    results = {}
    for arm in ranks:
        boot = {name: stats.topk_bootstrap(bucket_counts(list(on[name][arm].values())), key=(arm, name), resamples=resamples, seed=seed)
                for name in (SELECT, HELD_OUT)}
        diff = None if arm == baseline else stats.paired_bootstrap(pair_counts(on[HELD_OUT][arm], base), key=(arm, baseline), resamples=resamples, seed=seed)
        results[arm] = ArmResult(arm, boot[SELECT], boot[HELD_OUT], diff, p_values.get(arm), adjusted.get(arm))
    return chosen, results


def write_sweep_report(
    workdir: Workdir, grid: Grid, rows: Sequence[Mapping[str, Any]], formats: Sequence[str] = ("md", "json", "html")
) -> tuple[dict[str, Path], str | None]:
    """The report files and the chosen arm's config (format -> path, ``config`` -> path), and the chosen arm."""
    out = sweep_dir(workdir, grid.sweep_id)
    runs = {row["arm"]: row["run_id"] for row in rows if row["run_id"]}
    ranks, domains, chance = _ranks(workdir, grid, runs)
    splits = {video: split_of(video, domains.get(video), grid.selection) for by_video in ranks.values() for video in by_video}
    notes = []
    try:
        chosen, results = judge(ranks, splits, grid.baseline)
    except ValueError as exc:  # no arm has a scored, labelled video on the select split
        chosen, results = None, {}
        notes.append(f"No arm was chosen: {exc}.")
    report = _report(grid, rows, out, chosen, results, ranks, domains, splits, chance, notes)
    paths = {fmt: write_text_atomic(RENDERERS[fmt](report), out / f"report.{fmt}") for fmt in formats}
    if chosen:
        config = with_absolute_paths(grid.arm(chosen).config).model_dump(mode="json")
        paths["config"] = write_text_atomic(f"# the chosen arm {chosen!r} of sweep {grid.sweep_id}\n" + yaml.safe_dump(config, sort_keys=False), out / CHOSEN_CONFIG)
    return paths, chosen


def _ranks(workdir: Workdir, grid: Grid, runs: Mapping[str, str]) -> tuple[dict[str, dict[str, int]], dict[str, str | None], dict[str, float]]:
    """arm -> video -> true rank (by the arm's scorer), video -> domain, video -> chance of top-1."""
    ranks: dict[str, dict[str, int]] = {arm.name: {} for arm in grid.arms if arm.name in runs}
    domains: dict[str, str | None] = {}
    chance: dict[str, float] = {}
    with session(workdir) as s:
        s.focus(list(runs.values()))
        for arm in grid.arms:
            if arm.name not in runs:
                continue
            result = s.sql(
                "SELECT p.video_id, p.true_rank, p.n_candidates, v.domain FROM predictions p JOIN videos v USING (run_id, video_id) "
                "WHERE p.run_id = ? AND p.scorer = ? AND p.true_rank IS NOT NULL",
                [runs[arm.name], arm_scorer(grid, arm)],
            )
            for video, rank, n, domain in result.rows:
                ranks[arm.name][video] = int(rank)
                domains[video], chance[video] = domain, 1.0 / n
    return ranks, domains, chance


COLUMNS = [
    Column("arm", "arm"), Column("scorer", "scorer"), Column("run_id", "run"), Column("state", "state"),
    Column("select_n", "n select", "int"), Column("select_top1", "top-1 % select", "pct"), Column("select_top1", "95 % CI", "ci"),
    Column("held_n", "n held-out", "int"), Column("held_top1", "top-1 % held-out", "pct"), Column("held_top1", "95 % CI", "ci"),
    Column("diff", "held-out top-1 vs baseline (pp)", "diff"), Column("p", "p (McNemar)"), Column("p_holm", "p (Holm)"),
    Column("chosen", "chosen"),
]


def _report(
    grid: Grid, rows: Sequence[Mapping[str, Any]], out: Path, chosen: str | None, results: Mapping[str, ArmResult],
    ranks: Mapping[str, Mapping[str, int]], domains: Mapping[str, str | None], splits: Mapping[str, str], chance: Mapping[str, float], notes: list[str],
) -> Report:
    table_rows = []
    for row in rows:
        result = results.get(row["arm"])
        entry: dict[str, Any] = {k: row[k] for k in ("arm", "scorer", "run_id", "state")}
        entry.update(baseline=row["arm"] == grid.baseline, chosen="*" if row["arm"] == chosen else "")
        if result:
            for prefix, topk in (("select", result.select), ("held", result.held_out)):
                entry[f"{prefix}_n"] = topk.n
                if topk.estimate:
                    entry.update({f"{prefix}_top1": topk.estimate[0], f"{prefix}_top1_boot_lo": topk.lo[0], f"{prefix}_top1_boot_hi": topk.hi[0]})
            if result.diff and result.diff.estimate:
                entry.update(diff=result.diff.estimate[0], diff_lo=result.diff.lo[0], diff_hi=result.diff.hi[0])
            entry.update(p=_round(result.p), p_holm=_round(result.p_holm))
        table_rows.append(entry)
    held = [v for v, split in splits.items() if split == HELD_OUT]
    summary = [
        ("sweep", f"{grid.sweep_id} ({grid.name}, {grid.path})"),
        ("arms", f"{len(rows)}; varied: {', '.join(grid.varied) or 'nothing'}"),
        ("select on", f"{grid.selection.fraction:.0%} of videos by a hash of the video id" if grid.selection.fraction is not None
         else f"the domains {', '.join(grid.selection.domains)}"),
        ("videos", f"{sum(s == SELECT for s in splits.values())} select, {len(held)} held-out"),
        ("baseline arm", grid.baseline),
    ]
    if chosen and results[chosen].held_out.estimate:
        h, s = results[chosen].held_out, results[chosen].select
        chance_held = sum(chance[v] for v in held) / len(held) if held else None
        summary.append(("chosen arm", chosen))
        summary.append(("chosen arm, held-out top-1 (the headline)", f"{100 * h.estimate[0]:.1f} % [{100 * h.lo[0]:.1f}, {100 * h.hi[0]:.1f}] over {h.n} videos"
                        + (f"; chance {100 * chance_held:.1f} %" if chance_held is not None else "")))
        if s.estimate:
            summary.append(("chosen arm, select top-1 (optimistic: the best of the arms there)", f"{100 * s.estimate[0]:.1f} % over {s.n} videos"))
    notes += [
        "Arms are ranked on the select split; the chosen arm's held-out figure is the honest estimate, its select figure is the maximum of "
        f"{len(results)} noisy ones and reads high.",
        "Paired differences: held-out videos both arms scored; p: exact McNemar test on top-1; Holm's step-down correction over the arms compared with the baseline.",
        stats.method_note(),
    ]
    tables = [Table("arms", "Arms on both splits", COLUMNS, table_rows)]
    by_domain = _domain_winners(ranks, domains)
    if by_domain:
        tables.append(Table("by_domain", "Per-domain winners (exploratory)", [Column("domain", "domain"), Column("arm", "best arm"),
                            Column("n", "videos", "int"), Column("top1", "top-1 %", "pct")], by_domain,
                            note="Exploratory: picked after looking at all videos of the domain, not confirmed on held-out data."))
    config = redact(grid.arm(chosen).config.model_dump(mode="json")) if chosen else {}
    return Report(run_id=grid.sweep_id, title=f"Sweep {grid.name} ({grid.sweep_id})", banner=None,
                  created_at=datetime.now(UTC).isoformat(timespec="seconds"), out_dir=out, summary=summary, config=config,
                  method={"resamples": stats.RESAMPLES, "seed": stats.SEED, "level": stats.LEVEL, "selection": "max select-split top-1",
                          "test": "exact McNemar on top-1, Holm"},
                  tables=tables, notes=notes)


def _domain_winners(ranks: Mapping[str, Mapping[str, int]], domains: Mapping[str, str | None]) -> list[dict[str, Any]]:
    out = []
    for domain in sorted({d for d in domains.values() if d is not None}):
        scored = {arm: [r for v, r in by_video.items() if domains.get(v) == domain] for arm, by_video in ranks.items()}
        best = choose({arm: top1(r) for arm, r in scored.items()}) if any(scored.values()) else None
        if best:
            out.append({"domain": domain, "arm": best, "n": len(scored[best]), "top1": top1(scored[best])})
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
