"""Alignment plots: the step x frame affinity heatmap with the DTW path on top.

This is the picture of Figure 4 of the ActAlign paper: steps of the class's
script on the y axis (top to bottom in script order, labelled with their
texts), frame times on the x axis, the affinities as a heatmap with a colour
bar (fixed scale 0..1 so that plots of different candidates compare), and the
DTW path drawn over it as a line with markers.

Prefect-free and thread-safe: it uses ``Figure``/``FigureCanvasAgg`` directly,
never pyplot's global state, and serialises rendering behind a module lock
(matplotlib's text and font machinery is not guaranteed to be thread-safe).
The PNG is written under a temporary name in the destination folder, then
renamed over ``out``, so readers never see a half-written file.
"""

from __future__ import annotations

import math
import os
import tempfile
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["plot_alignment", "FORMATS", "HIGHLIGHTS", "literal", "save_atomically"]

#: Allowed ``highlight`` values and their (frame colour, badge text).
HIGHLIGHTS: dict[str, tuple[str, str]] = {
    "true": ("#2e7d32", "TRUE CLASS"),
    "predicted": ("#ef6c00", "PREDICTED"),
    "true+predicted": ("#1565c0", "TRUE CLASS = PREDICTED"),
}

_CMAP = "viridis"
_PATH_COLOUR = "#ff2d55"  # a saturated pink-red: visible on every viridis colour
#: Default resolution of raster figures: sharp enough to print.
DEFAULT_DPI = 150
#: File formats a figure can be written in (PNG for screens, SVG and PDF for papers).
FORMATS = ("png", "svg", "pdf")
_RENDER_LOCK = threading.Lock()

# Figure size limits (inches).
_MIN_W, _MAX_W = 8.0, 17.0
_MIN_H, _MAX_H = 3.6, 9.5
_LABEL_W = 3.6  # room for the step texts on the left (for the figure width)
_ROW_H = 0.42  # inches per step before clamping


def plot_alignment(
    affinity: np.ndarray,
    path: Sequence[tuple[int, int]],
    step_texts: Sequence[str],
    times_s: Sequence[float],
    title: str,
    out: Path,
    *,
    subtitle: str | None = None,
    highlight: str | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Draw the affinity heatmap of one (video, class) pair with its DTW path; write a PNG.

    ``affinity`` is K x T (steps x frames) with values in [0, 1]; ``path`` the DTW
    cells ``(k, t)`` in order (each cell in range, both coordinates never
    decreasing, no cell repeated; an empty path draws the heatmap alone);
    ``step_texts`` the K step texts; ``times_s`` the T frame times in seconds.
    ``highlight`` (``"true"``, ``"predicted"`` or ``"true+predicted"``) draws a
    coloured frame and badge around the figure. The file format follows the suffix
    of ``out`` (one of ``FORMATS``); ``dpi`` sets the resolution of a PNG. The
    parent folder of ``out`` is created if needed. Returns ``out``.

    Raises ``ValueError`` naming the problem for inconsistent inputs.
    """
    aff, cells, texts, times = _validate(affinity, path, step_texts, times_s, highlight)
    out = Path(out)
    n_steps, n_frames = aff.shape

    width = _clamp(_LABEL_W + 1.4 + 0.045 * n_frames, _MIN_W, _MAX_W)
    height = _clamp(2.0 + _ROW_H * n_steps, _MIN_H, _MAX_H)

    with _RENDER_LOCK:
        fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        try:
            _draw(fig, aff, cells, texts, times, title, subtitle, highlight, width, height)
            save_atomically(fig, out, dpi=dpi)
        finally:
            fig.clear()
    return out


# --------------------------------------------------------------------------- validation


def _validate(affinity, path, step_texts, times_s, highlight):
    aff = np.asarray(affinity, dtype=float)
    if aff.ndim != 2:
        raise ValueError(f"affinity must be 2-D (steps x frames); got shape {aff.shape}")
    n_steps, n_frames = aff.shape
    if n_steps == 0 or n_frames == 0:
        raise ValueError(f"affinity must have at least one step and one frame; got shape {aff.shape}")
    if not np.all(np.isfinite(aff)):
        raise ValueError("affinity contains NaN or infinite values")
    lo, hi = float(aff.min()), float(aff.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"affinity values must lie in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")

    if isinstance(step_texts, str):
        raise ValueError("step_texts must be a sequence of strings, not a single string")
    texts = [str(s) for s in step_texts]
    if len(texts) != n_steps:
        raise ValueError(f"len(step_texts) = {len(texts)} but affinity has K = {n_steps} steps (rows)")

    times = np.asarray(times_s, dtype=float).reshape(-1)
    if times.size != n_frames:
        raise ValueError(f"len(times_s) = {times.size} but affinity has T = {n_frames} frames (columns)")
    if not np.all(np.isfinite(times)):
        raise ValueError("times_s contains NaN or infinite values")

    cells = _validate_path(path, n_steps, n_frames)

    if highlight is not None and highlight not in HIGHLIGHTS:
        raise ValueError(f"highlight must be None or one of {sorted(HIGHLIGHTS)}; got {highlight!r}")
    return aff, cells, texts, times


def _validate_path(path, n_steps: int, n_frames: int) -> np.ndarray:
    raw = list(path)
    cells = np.empty((len(raw), 2), dtype=int)
    for i, cell in enumerate(raw):
        try:
            k, t = cell
        except (TypeError, ValueError):
            raise ValueError(f"path cell #{i} must be a (step, frame) pair; got {cell!r}") from None
        if not (_is_int(k) and _is_int(t)):
            raise ValueError(f"path cell #{i} must hold integers; got {cell!r}")
        k, t = int(k), int(t)
        if not (0 <= k < n_steps and 0 <= t < n_frames):
            raise ValueError(
                f"path cell #{i} = ({k}, {t}) is out of range for affinity of shape ({n_steps}, {n_frames})"
            )
        cells[i] = (k, t)
    if len(cells) > 1:
        d = np.diff(cells, axis=0)
        bad = np.flatnonzero((d[:, 0] < 0) | (d[:, 1] < 0) | ((d[:, 0] == 0) & (d[:, 1] == 0)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"path is not monotone: cell #{i} = {tuple(cells[i])} is followed by "
                f"{tuple(cells[i + 1])} (step and frame must never decrease, and cells must not repeat)"
            )
    return cells


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# --------------------------------------------------------------------------- drawing


def _draw(fig, aff, cells, texts, times, title, subtitle, highlight, width, height) -> None:
    n_steps, n_frames = aff.shape
    ax = fig.add_subplot()

    image = ax.imshow(
        aff,
        cmap=_CMAP,
        vmin=0.0,
        vmax=1.0,
        aspect="auto",
        interpolation="nearest",
        origin="upper",  # step 0 (first in the script) at the top
    )
    cbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.015)
    cbar.set_label("affinity")
    cbar.ax.tick_params(labelsize=8)

    # Thin white separators between steps make rows easy to follow.
    for k in range(1, n_steps):
        ax.axhline(k - 0.5, color="white", linewidth=0.6, alpha=0.6)

    # Step texts on the y axis.
    row_in = (height - 1.6) / n_steps  # rough height of one row in inches
    y_font = 9.0 if n_steps <= 8 else 8.0 if n_steps <= 15 else 7.0
    line_in = y_font * 1.25 / 72
    max_lines = max(1, min(3, int(row_in / line_in)))
    y_labels = [_wrap_step(i, s, width=40, max_lines=max_lines) for i, s in enumerate(texts)]
    ax.set_yticks(range(n_steps))
    ax.set_yticklabels(y_labels, fontsize=y_font)
    ax.set_ylabel("script step")

    # Frame times on the x axis, thinned to what fits. The axes width is
    # estimated from the widest step label and the colour bar.
    widest = max(len(line) for label in y_labels for line in label.split("\n"))
    label_in = 0.45 + widest * y_font * 0.55 / 72
    axes_in = max(1.0, width - label_in - 1.0)
    max_labels = max(2, int(axes_in / 0.6))
    positions, labels = _time_ticks(times, max_labels)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel("frame time (s)" + ("    \u2014  red line: DTW alignment path" if len(cells) else ""))
    ax.tick_params(axis="both", length=3)

    # The DTW path.
    if len(cells):
        cell_pt = axes_in * 72 / n_frames
        marker = _clamp(0.8 * cell_pt, 2.0, 7.0)
        ax.plot(
            cells[:, 1],
            cells[:, 0],
            color=_PATH_COLOUR,
            linewidth=1.8 if marker >= 3 else 1.3,
            marker="o",
            markersize=marker,
            markeredgecolor="white",
            markeredgewidth=0.5 if marker >= 3 else 0.3,
            zorder=3,
            # A dark outline keeps the path visible over bright and busy cells.
            path_effects=[
                patheffects.Stroke(linewidth=3.2 if marker >= 3 else 2.6, foreground="black", alpha=0.8),
                patheffects.Normal(),
            ],
        )
    ax.set_xlim(-0.5, n_frames - 0.5)
    ax.set_ylim(n_steps - 0.5, -0.5)

    # Header: the title left-aligned at the top (after the badge, if any), the
    # subtitle centred just above the axes. With a highlight, the content is
    # inset from the coloured frame.
    pad_in = 0.15 if highlight else 0.06
    fig.get_layout_engine().set(w_pad=pad_in, h_pad=pad_in)
    left_in = pad_in + 0.08
    badge_in = 0.3 + 0.09 * len(HIGHLIGHTS[highlight][1]) if highlight else 0.0  # ~ badge width
    title_x_in = left_in + badge_in
    title_chars = max(16, int((width - title_x_in - pad_in - 0.1) * 72 / (13 * 0.6)))
    fig.suptitle(
        _wrap(title, title_chars, max_lines=3),
        x=title_x_in / width,
        ha="left",
        fontsize=13,
        fontweight="bold",
    )
    if subtitle:
        sub_chars = max(30, int(axes_in * 72 / (9 * 0.55)))
        ax.set_title(_wrap(subtitle, sub_chars, max_lines=3), fontsize=9, color="#333333")

    if highlight is not None:
        colour, badge = HIGHLIGHTS[highlight]
        lw_pt = 6.0
        inset_x, inset_y = lw_pt / 2 / 72 / width, lw_pt / 2 / 72 / height
        fig.add_artist(
            Rectangle(
                (inset_x, inset_y),
                1 - 2 * inset_x,
                1 - 2 * inset_y,
                transform=fig.transFigure,
                fill=False,
                edgecolor=colour,
                linewidth=lw_pt,
                zorder=10,
            )
        )
        fig.text(
            left_in / width,
            1 - (pad_in + 0.04) / height,
            badge,
            ha="left",
            va="top",
            fontsize=9,
            fontweight="bold",
            color="white",
            bbox={"boxstyle": "round,pad=0.35", "facecolor": colour, "edgecolor": "none"},
            zorder=11,
        )


def literal(text: str) -> str:
    """Escape ``$`` so that matplotlib shows the text as is instead of parsing mathtext."""
    return str(text).replace("$", r"\$")


def _wrap_step(i: int, text: str, *, width: int, max_lines: int) -> str:
    body = " ".join(text.split()) or "(empty)"
    prefix = f"{i + 1}. "
    lines = textwrap.wrap(body, width=width - len(prefix), break_long_words=True, break_on_hyphens=True)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        lines[-1] = (last[: width - len(prefix) - 1].rstrip() + "…") if last else "…"
    return literal(prefix + "\n".join(lines))


def _wrap(text: str, width: int, *, max_lines: int) -> str:
    lines = textwrap.wrap(" ".join(str(text).split()), width=width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return literal("\n".join(lines))


def _nice_number(minimum: float, mantissas: tuple[float, ...]) -> float:
    """The smallest m * 10**e (m in mantissas) that is >= minimum."""
    exponent = math.floor(math.log10(minimum))
    for e in (exponent, exponent + 1):
        for m in mantissas:
            if m * 10**e >= minimum * (1 - 1e-9):
                return m * 10**e
    return 10 ** (exponent + 2)  # pragma: no cover


def _time_ticks(times: np.ndarray, max_labels: int) -> tuple[list[float], list[str]]:
    """At most ``max_labels`` x ticks: round times placed between frames if the
    times increase, else every n-th frame labelled with its own time."""
    n = times.size
    idx = np.arange(n, dtype=float)
    span = float(times[-1] - times[0]) if n > 1 else 0.0
    if n > 1 and span > 0 and np.all(np.diff(times) > 0):
        step = _nice_number(span / max_labels, (1, 2, 2.5, 5))
        first = math.ceil(times[0] / step - 1e-9) * step
        values = np.arange(first, times[-1] + step * 1e-9, step)
        decimals = _decimals(step)
        positions = np.interp(values, times, idx)
        return positions.tolist(), [f"{v:.{decimals}f}" for v in values]
    stride = int(_nice_number(max(1.0, n / max_labels), (1, 2, 5)))
    ticks = list(range(0, n, stride))
    return [float(t) for t in ticks], [f"{times[t]:g}" for t in ticks]


def _decimals(step: float) -> int:
    for d in range(4):
        if abs(step * 10**d - round(step * 10**d)) < 1e-6:
            return d
    return 3


def _clamp(v: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, v))


# --------------------------------------------------------------------------- writing


def save_atomically(fig: Figure, out: Path, *, dpi: int = DEFAULT_DPI) -> None:
    """Write ``fig`` at ``out`` (format from its suffix, one of ``FORMATS``) under a temporary name, then rename it:
    readers never see a half-written file."""
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"figure file {out.name!r} must end in one of {', '.join('.' + f for f in FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would hide the figures from anyone else who reads them
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=dpi, facecolor="white")
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
