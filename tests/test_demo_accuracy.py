"""The method shown end to end with a trained model: `actalign demo` on its generated videos.

Real MP4 files, decoded by PyAV, encoded by toy-shapes (trained here on
generated shapes), scored, and read back from the DuckDB views. A bug that
scrambled frame order, mislabelled embeddings or mismatched the calibration
would fail these, which the untrained tiny model cannot show.
"""

from __future__ import annotations

import csv
from pathlib import Path

import av
import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from actalign.caveats import TOY_BANNER, UNTRAINED_BANNER
from actalign.cli.main import app
from actalign.video_files import write_video

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "toy_shapes")]  # toy-shapes: trained once per session, minutes

ALIGNMENT_SCORERS_THAT_SKIP_BACKGROUND = ("actalign-subsequence", "drop-dtw-calibrated")


def actalign(*args: str | Path) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def query(workdir: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def latest_top1(workdir: Path) -> dict[str, float]:
    """Top-1 accuracy by scorer of the workdir's latest run, from the accuracy view."""
    return dict(query(workdir, "SELECT scorer, top1 FROM accuracy WHERE run_id = (SELECT max(run_id) FROM runs)"))


@pytest.fixture(scope="module")
def order_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(workdir, printed output) of `actalign demo` offline: it falls back to toy-shapes."""
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, actalign("demo", "--workdir", workdir)


def test_order_demo_alignment_sees_order_that_mean_pooling_cannot(order_demo: tuple[Path, str]) -> None:
    workdir, output = order_demo
    assert "Running the demo with toy-shapes" in output and "TOY MODEL" in output and "UNTRAINED" not in output
    top1 = latest_top1(workdir)
    assert top1["actalign"] >= 0.9  # 6 classes: chance is 1/6
    assert top1["mean-pool"] <= 0.35
    assert query(workdir, "SELECT model, model_trained, model_caveat FROM runs") == [("toy-shapes", True, TOY_BANNER)]
    report = next((workdir / "runs").glob("*/report.md")).read_text(encoding="utf-8")
    assert TOY_BANNER in report and UNTRAINED_BANNER not in report


def test_reversed_videos_are_predicted_as_the_reversed_order(order_demo: tuple[Path, str], tmp_path: Path) -> None:
    """A control from the same files: every frame in reverse order, labelled with the reversed class."""
    source = order_demo[0] / "demo-input" / "order"
    with open(source / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    (tmp_path / "videos").mkdir()
    for row in rows:
        with av.open(str(source / row["path"])) as container:
            frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
        write_video(tmp_path / row["path"], frames[::-1], fps=12)
        row["label"] = "-".join(reversed(row["label"].split("-")))
    with open(tmp_path / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    workdir = tmp_path / "work"
    actalign("run", "--videos", tmp_path / "manifest.csv", "--classes", source / "classes.yaml", "--model", "toy-shapes",
             "--scorer", "actalign", "--workdir", workdir)
    assert latest_top1(workdir)["actalign"] >= 0.9


def test_background_demo_local_alignment_leaves_the_background_out(tmp_path: Path) -> None:
    output = actalign("demo", "--set", "background", "--workdir", tmp_path)
    assert "TOY MODEL" in output
    top1 = latest_top1(tmp_path)
    for scorer in ALIGNMENT_SCORERS_THAT_SKIP_BACKGROUND:
        assert top1[scorer] >= 0.8, top1
        assert top1[scorer] >= top1["actalign"] + 0.2, top1  # paper-exact must cover the background too
