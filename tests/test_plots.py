"""Alignment plots: real PNG files, checked by reading their pixels back."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from actalign.align import align_many
from actalign.plots import plot_alignment

PATH_RGB = np.array([0xFF, 0x2D, 0x55])  # the path colour of actalign.plots
VIRIDIS_0 = np.array([68, 1, 84])  # viridis at affinity 0


def _rgb(png: Path) -> np.ndarray:
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def _near(pixels: np.ndarray, colour: np.ndarray, tol: int = 12) -> np.ndarray:
    return np.all(np.abs(pixels - colour) <= tol, axis=-1)


def _case(n_steps: int, n_frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.linspace(0, n_frames, n_steps + 2)[1:-1]
    t = np.arange(n_frames)
    aff = np.clip(0.1 + 0.8 * np.exp(-(((t[None] - centres[:, None]) / 6) ** 2)) + 0.05 * rng.random((n_steps, n_frames)), 0, 1)
    path = [tuple(cell) for cell in align_many([aff])[0].path]
    texts = [f"Step {k}: do the thing number {k} with some care and a little flourish" for k in range(n_steps)]
    return aff, path, texts, (t / 6.5).tolist()


def _only_output(folder: Path, out: Path) -> None:
    assert sorted(folder.iterdir()) == [out], "temporary files were left behind"


@pytest.mark.parametrize(("n_steps", "n_frames"), [(3, 8), (12, 195)])
def test_writes_a_valid_png(tmp_path, n_steps, n_frames):
    aff, path, texts, times = _case(n_steps, n_frames)
    out = tmp_path / "align.png"
    got = plot_alignment(
        aff,
        path,
        texts,
        times,
        "Axe kick — actalign score 0.612",
        out,
        subtitle="true class: axe-kick · predicted: roundhouse · model: tiny-random (UNTRAINED)",
        highlight="true",
    )
    assert got == out
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG"
        width, height = im.size
    assert 1050 <= width <= 2700 and 450 <= height <= 1500  # 150 dpi
    _only_output(tmp_path, out)


def test_figure_grows_with_steps_and_frames(tmp_path):
    sizes = []
    for n_steps, n_frames in [(3, 8), (12, 195)]:
        aff, path, texts, times = _case(n_steps, n_frames)
        out = plot_alignment(aff, path, texts, times, "t", tmp_path / f"{n_steps}.png")
        with Image.open(out) as im:
            sizes.append(im.size)
    assert sizes[1][0] > sizes[0][0] and sizes[1][1] > sizes[0][1]


def test_heatmap_and_path_are_drawn(tmp_path):
    n_steps, n_frames = 4, 20
    zeros = np.zeros((n_steps, n_frames))
    texts = ["a", "b", "c", "d"]
    times = np.arange(n_frames) * 0.5
    diagonal = [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)] + [(1, t) for t in range(5, 10)] + [
        (2, t) for t in range(10, 15)
    ] + [(3, t) for t in range(15, 20)]
    late = [(0, t) for t in range(0, 15)] + [(1, 15), (2, 16), (3, 17), (3, 18), (3, 19)]

    none_png = plot_alignment(zeros, [], texts, times, "no path", tmp_path / "none.png")
    diag_png = plot_alignment(zeros, diagonal, texts, times, "no path", tmp_path / "diag.png")
    late_png = plot_alignment(zeros, late, texts, times, "no path", tmp_path / "late.png")
    none, diag, late_px = _rgb(none_png), _rgb(diag_png), _rgb(late_png)

    # The heatmap: a large block of viridis(0) for an all-zero affinity.
    assert _near(none, VIRIDIS_0).sum() > 0.2 * none.shape[0] * none.shape[1]
    # The path: its colour is absent without a path and plentiful with one.
    assert _near(none, PATH_RGB, tol=40).sum() < 20
    assert _near(diag, PATH_RGB, tol=40).sum() > 300
    assert _near(late_px, PATH_RGB, tol=40).sum() > 300
    # Different paths give different pictures, differing where the paths do.
    assert none.shape == diag.shape == late_px.shape
    differs = np.any(diag != late_px, axis=-1)
    assert differs.sum() > 300
    # Step 0 is at the top: the "late" path stays on the first row far longer,
    # so it has more path pixels in the upper half of the heatmap than the diagonal.
    rows_diag = np.nonzero(_near(diag, PATH_RGB, tol=40))[0]
    rows_late = np.nonzero(_near(late_px, PATH_RGB, tol=40))[0]
    assert np.median(rows_late) < np.median(rows_diag)


def test_highlight_draws_a_coloured_frame(tmp_path):
    aff, path, texts, times = _case(3, 10)
    plain = _rgb(plot_alignment(aff, path, texts, times, "t", tmp_path / "plain.png"))
    framed = _rgb(plot_alignment(aff, path, texts, times, "t", tmp_path / "framed.png", highlight="predicted"))
    assert np.all(plain[2, plain.shape[1] // 2] >= 250)  # white edge
    assert _near(framed[2, framed.shape[1] // 2], np.array([0xEF, 0x6C, 0x00]), tol=10)


def test_overwrites_atomically_and_creates_the_folder(tmp_path):
    aff, path, texts, times = _case(3, 10)
    out = tmp_path / "sub" / "dir" / "align.png"
    plot_alignment(aff, path, texts, times, "first", out)
    first = out.read_bytes()
    plot_alignment(aff, path, texts, times, "second, different", out)
    assert out.read_bytes() != first
    _only_output(out.parent, out)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    aff, path, texts, times = _case(3, 10)
    out = tmp_path / "align.png"

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(OSError, match="disk full"):
        plot_alignment(aff, path, texts, times, "t", out)
    assert list(tmp_path.iterdir()) == []


def test_text_is_shown_literally(tmp_path):
    # "$" would otherwise start matplotlib mathtext (and unbalanced ones would fail).
    out = plot_alignment(
        np.full((2, 3), 0.5), [(0, 0), (1, 2)], ["pay $5", "x"], [0, 1, 2], "cost $5", tmp_path / "d.png",
        subtitle="a $b c",
    )
    assert out.exists()


def test_threads_render_concurrently(tmp_path):
    aff, path, texts, times = _case(5, 40)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            plot_alignment(aff, path, texts, times, f"thread {i}", tmp_path / f"{i}.png")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i}.png" for i in range(4)]


def _good():
    return np.full((2, 3), 0.5), [(0, 0), (1, 1), (1, 2)], ["a", "b"], [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"affinity": np.zeros(6)}, "affinity must be 2-D"),
        ({"affinity": np.zeros((2, 3, 1))}, "affinity must be 2-D"),
        ({"affinity": np.zeros((0, 3))}, "at least one step"),
        ({"affinity": np.array([[0.5, np.nan, 0.5], [0.5, 0.5, 0.5]])}, "NaN"),
        ({"affinity": np.full((2, 3), 1.5)}, r"\[0, 1\]"),
        ({"step_texts": ["a"]}, r"len\(step_texts\) = 1 but affinity has K = 2"),
        ({"step_texts": "ab"}, "sequence of strings"),
        ({"times_s": [0.0, 1.0]}, r"len\(times_s\) = 2 but affinity has T = 3"),
        ({"path": [(0, 0), (2, 2)]}, r"path cell #1 = \(2, 2\) is out of range"),
        ({"path": [(0, -1)]}, "out of range"),
        ({"path": [(0, 0), (1, 2), (1, 1)]}, "path is not monotone"),
        ({"path": [(0, 0), (1, 1), (0, 2)]}, "path is not monotone"),
        ({"path": [(0, 0), (0, 0)]}, "path is not monotone"),
        ({"path": [(0, 0, 0)]}, r"\(step, frame\) pair"),
        ({"path": [(0.5, 1)]}, "integers"),
        ({"highlight": "wrong"}, "highlight must be"),
    ],
)
def test_bad_inputs_raise_value_error(tmp_path, change, message):
    aff, path, texts, times = _good()
    kwargs = {"affinity": aff, "path": path, "step_texts": texts, "times_s": times, "highlight": None}
    kwargs.update(change)
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match=message):
        plot_alignment(
            kwargs["affinity"], kwargs["path"], kwargs["step_texts"], kwargs["times_s"], "t", out,
            highlight=kwargs["highlight"],
        )
    assert not out.exists()


@pytest.mark.parametrize(("dpi", "scale"), [(150, 1.5), (300, 3.0)])
def test_png_size_follows_the_dpi(tmp_path, dpi, scale):
    aff, path, texts, times = _case(3, 8)
    at_100 = plot_alignment(aff, path, texts, times, "t", tmp_path / "100.png", dpi=100)
    out = plot_alignment(aff, path, texts, times, "t", tmp_path / f"{dpi}.png", dpi=dpi)
    with Image.open(at_100) as small, Image.open(out) as big:
        assert big.size[0] == pytest.approx(small.size[0] * scale, abs=3)
        assert big.size[1] == pytest.approx(small.size[1] * scale, abs=3)
    assert (out.stat().st_mode & 0o777) == 0o644


def test_default_png_is_at_least_150_dpi(tmp_path):
    aff, path, texts, times = _case(3, 8)
    out = plot_alignment(aff, path, texts, times, "t", tmp_path / "a.png")
    with Image.open(out) as im:
        assert im.size[0] >= 8.0 * 150 - 2  # the figure is at least 8 inches wide


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<svg"), (".pdf", b"%PDF-")])
def test_writes_svg_and_pdf_by_suffix(tmp_path, suffix, magic):
    aff, path, texts, times = _case(3, 8)
    out = plot_alignment(aff, path, texts, times, "t", tmp_path / f"a{suffix}")
    head = out.read_bytes()[:4096]
    assert magic in head if suffix == ".svg" else head.startswith(magic)
    assert (out.stat().st_mode & 0o777) == 0o644
    _only_output(tmp_path, out)


def test_refuses_an_unknown_figure_suffix(tmp_path):
    aff, path, texts, times = _case(3, 8)
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        plot_alignment(aff, path, texts, times, "t", tmp_path / "a.gif")


def test_margin_histogram_counts_videos_in_whole_numbers_and_prints_ticks_in_full():
    from actalign.queries.report.figures import margins_figure

    margins = {"actalign": np.array([-3e-5, 1e-5, 2e-5]), "mean": np.array([0.5])}
    fig = margins_figure(margins)
    fig.canvas.draw()
    for ax in fig.axes:
        counts = [t.get_text().replace("\u2212", "-") for t in ax.get_yticklabels() if t.get_text()]
        assert counts and all(float(c) == int(float(c)) for c in counts), counts
        assert ax.xaxis.get_offset_text().get_text() == ""
    ticks = [t.get_text().replace("\u2212", "-") for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert "0" in ticks and any("e-05" in t for t in ticks), ticks


def test_domain_bars_mark_a_zero_accuracy():
    from actalign.queries.report.figures import domain_bars_figure

    row = {"top1": 0.0, "top1_boot_lo": 0.0, "top1_boot_hi": 0.0, "random_top1": 0.25}
    fig = domain_bars_figure([{"scorer": "actalign", **row}], [{"scorer": "actalign", "domain": "kicks", **row}])
    from matplotlib.collections import PathCollection

    markers = [off for c in fig.axes[0].collections if isinstance(c, PathCollection) for off in c.get_offsets()]
    assert len(markers) == 2 and all(x == 0 for x, _ in markers)


def test_heatmap_scores_have_enough_digits_to_tell_candidates_apart():
    from actalign.queries.explain import score_labels

    assert score_labels([0.61234, 0.2]) == ["0.6123", "0.2"]
    assert score_labels([3.2e-5, 3.21e-5, 0.0]) == ["3.2e-05", "3.21e-05", "0"]
    labels = score_labels([0.123456781, 0.123456789, 0.5])
    assert len(set(labels)) == 3 and labels[2] == "0.5"
