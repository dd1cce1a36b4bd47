"""The report's figures: top-1 accuracy per domain, score margins, and the alignment heatmaps of chosen videos.

Plots use matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never pyplot's global state.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from actalign import plots
from actalign.ids import file_stem
from actalign.plots import literal, save_atomically
from actalign.queries.report.model import Heatmaps
from actalign.storage.atomic import replace_atomically
from actalign.storage.safe_paths import contained
from actalign.storage.workdir import Workdir

_RENDER_LOCK = threading.Lock()
_BAR_FIELDS = ("scorer", "domain", "top1", "top1_boot_lo", "top1_boot_hi", "random_top1")  # what domain_bars_figure reads
_DRAWING_CODE = (Path(__file__), Path(plots.__file__))  # a change to either draws every figure anew


def plot_domain_bars(accuracy: list[dict[str, Any]], by_domain: list[dict[str, Any]], out: Path, drawn: Path | None = None) -> Path:
    """Write the figure of ``domain_bars_figure`` to ``out`` (``drawn``: see ``_draw_once``)."""
    shown = [[{k: row.get(k) for k in _BAR_FIELDS} for row in rows] for rows in (accuracy, by_domain)]  # not the run id
    return _draw_once(out, drawn, ("domain bars", shown), lambda: domain_bars_figure(*shown))  # it sees only what is hashed


def _draw_once(out: Path, drawn: Path | None, inputs: Any, make: Callable[[], Figure]) -> Path:
    """Draw ``make()`` into ``out``, or copy it from the folder ``drawn`` of figures drawn before.

    A figure there is named by a hash of everything it shows (``inputs``) and of the code that draws
    it, so an unchanged re-run's report copies its figures instead of drawing them again."""
    stored = drawn / f"{_figure_key(inputs)}{out.suffix}" if drawn is not None else None
    if stored is not None and stored.is_file():
        replace_atomically(out, lambda tmp: shutil.copyfile(stored, tmp))
        return out
    with _RENDER_LOCK:
        fig = make()
        save_atomically(fig, out)
        fig.clear()
    if stored is not None:
        replace_atomically(stored, lambda tmp: shutil.copyfile(out, tmp))
    return out


def _figure_key(inputs: Any) -> str:
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=_plain).encode())
    for code in _DRAWING_CODE:
        digest.update(code.read_bytes())
    digest.update(matplotlib.__version__.encode())
    return digest.hexdigest()[:32]


def _plain(value: Any) -> Any:
    """JSON for the arrays and numbers a figure's inputs hold (``repr``: every bit of a float)."""
    if isinstance(value, np.ndarray):
        return [repr(float(x)) for x in value.ravel()]
    return repr(value)


def domain_bars_figure(accuracy: list[dict[str, Any]], by_domain: list[dict[str, Any]]) -> Figure:
    """Horizontal bars of top-1 accuracy per domain and scorer (all domains first), bootstrap intervals
    as error bars, a marker at 0 % where a bar has no length, and the random baseline as a dashed black line."""
    scorers = sorted({r["scorer"] for r in by_domain})
    groups = ["all domains"] + sorted({r["domain"] for r in by_domain})
    value = {(r["scorer"], r["domain"]): r for r in by_domain}
    value.update({(r["scorer"], "all domains"): r for r in accuracy})
    bar_h = 0.8 / max(1, len(scorers))
    height = min(60.0, 1.6 + len(groups) * max(0.45, 0.28 * len(scorers)))
    colours = ["#7f7f7f", "#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828"]
    fig = Figure(figsize=(9.0, height), layout="constrained")
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
        colour = colours[j % len(colours)]
        ax.barh(ys, xs, height=bar_h * 0.9, color=colour, label=scorer,
                xerr=[lo, hi], error_kw={"ecolor": "black", "elinewidth": 0.8, "capsize": 2})
        zeros = [y for y, x in zip(ys, xs) if x == 0]
        if zeros:
            ax.scatter([0.0] * len(zeros), zeros, marker="D", s=30, color=colour, edgecolor="black", linewidth=0.6, zorder=5, clip_on=False)
    for i, group in enumerate(groups):
        randoms = [value[(sc, group)]["random_top1"] for sc in scorers if (sc, group) in value and value[(sc, group)]["random_top1"] is not None]
        if randoms:
            ax.plot([100 * randoms[0]] * 2, [i - 0.46, i + 0.46], color="black", linewidth=1.6, linestyle=(0, (3, 1.5)), zorder=4,
                    label="random baseline" if i == 0 else None)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([literal(g) for g in groups], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title("Top-1 accuracy per domain (95 % bootstrap intervals; a diamond marks 0 %)", fontsize=11)
    return fig


def plot_margins(margins: dict[str, np.ndarray], out: Path, drawn: Path | None = None) -> Path:
    """Write the figure of ``margins_figure`` to ``out`` (``drawn``: see ``_draw_once``)."""
    return _draw_once(out, drawn, ("margins", margins), lambda: margins_figure(margins))


def margins_figure(margins: dict[str, np.ndarray]) -> Figure:
    """One histogram per scorer of margin = true score minus best other score; bars right of 0 (ranked
    first) in green, the rest in red. Video counts are whole numbers and each margin tick is printed in
    full (no shared offset or 1e-5 multiplier a reader would miss)."""
    scorers = sorted(margins)
    fig = Figure(figsize=(9.0, 1.2 + 2.2 * len(scorers)), layout="constrained")
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
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos, span=span: "0" if abs(v) < span * 1e-9 else f"{v:.3g}"))
        first = float((values > 0).mean())
        ax.set_title(f"{literal(scorer)}: {values.size} videos, {100 * first:.1f} % with margin > 0 (ranked first)", fontsize=10, loc="left")
        ax.set_ylabel("videos")
    axes[-1].set_xlabel("margin = true class score - best other candidate's score (each scorer's own scale)")
    return fig


def draw_heatmaps(workdir: Workdir, run_id: str, scorer: str, videos: list[str], out_dir: Path) -> list[Heatmaps]:
    """Each video's heatmaps in ``<out_dir>/figures/heatmaps/<file_stem(video)>``."""
    from actalign.queries.explain import explain_video  # the heatmaps of `actalign explain`, reused; it imports numba

    drawn = []
    for video in videos:
        caption = f"video {video}: {scorer} alignment of every candidate (steps x frames, path in red)"
        try:
            paths = explain_video(workdir, video, run_id, scorer, contained(out_dir, out_dir / "figures" / "heatmaps" / file_stem(video)))
            drawn.append(Heatmaps(video, scorer, caption, paths))
        except Exception as exc:  # a report still renders when one picture cannot be drawn; it says why
            drawn.append(Heatmaps(video, scorer, caption, error=f"{type(exc).__name__}: {exc}"))
    return drawn
