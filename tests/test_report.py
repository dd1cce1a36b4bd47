"""Reports: the flow's report.md and Prefect artifacts, `actalign report` in every format, the HTML in a real browser.

One real pipeline run (tiny untrained model, generated demo videos) under the shared Prefect test
server feeds the tests that need real frames and scripts (heatmaps, artifacts); the generated
workdir of tests/test_queries.py feeds the rest (failures, comparison, secrets).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_queries import RUN_A, RUN_B, generate, write_workdir
from typer.testing import CliRunner

from actalign.caveats import UNTRAINED_BANNER
from actalign.cli.main import app
from actalign.config import RunConfig
from actalign.ids import file_stem
from actalign.queries.report.build import build_report
from actalign.queries.report.html_page import render_html
from actalign.queries.report.json_doc import render_json
from actalign.queries.report.markdown import render_markdown
from actalign.queries.report.write import write_files
from actalign.tasks.artifacts import MARKDOWN_ARTIFACT_KEY, TABLE_ARTIFACT_KEY

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pipeline_run(demo_dataset, tmp_path_factory, prefect_harness):
    from actalign.flows.pipeline import run_pipeline

    manifest, classes = demo_dataset
    config = RunConfig(videos=manifest, classes=classes, workdir=tmp_path_factory.mktemp("report") / "work", model="tiny-random", shard_size=4)
    return run_pipeline(config)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return write_workdir(tmp_path_factory.mktemp("generated") / "work", generate())


def test_the_flow_writes_report_md_from_the_same_code(pipeline_run):
    path = Path(pipeline_run.report)
    assert path == Path(pipeline_run.workdir) / "runs" / pipeline_run.run_id / "report.md"
    text = path.read_text()
    assert UNTRAINED_BANNER in text
    for heading in ("## Configuration", "## Accuracy (labelled videos)", "## Videos left out", "## Accuracy per domain", "## Where mean-pool and actalign disagree", "## Predictions"):
        assert heading in text, heading
    assert "random %" in text and "95 % bootstrap CI" in text and "1000 resamples, seed 0" in text
    assert (path.parent / "figures" / "accuracy-by-domain.png").stat().st_size > 5000
    assert (path.parent / "figures" / "margins.png").stat().st_size > 5000
    assert "![Score margins](figures/margins.png)" in text


def test_a_flow_run_publishes_the_accuracy_table_and_markdown_artifacts(pipeline_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[TABLE_ARTIFACT_KEY, MARKDOWN_ARTIFACT_KEY])))
        ours = [a for a in artifacts if pipeline_run.run_id in (a.description or "")]
        by_type = {a.type: a for a in ours}
        assert set(by_type) == {"table", "markdown"}
        flow_run = client.read_flow_run(by_type["table"].flow_run_id)
        assert client.read_flow(flow_run.flow_id).name == "actalign-pipeline"
        assert by_type["markdown"].flow_run_id == flow_run.id and by_type["table"].task_run_id is not None
    table = json.loads(by_type["table"].data) if isinstance(by_type["table"].data, str) else by_type["table"].data
    assert sorted(row["scorer"] for row in table) == ["actalign", "mean-pool"]
    assert {"top-1 %", "top-1 95 % bootstrap CI", "random top-1 %", "random top-3 %", "left out"} <= set(table[0])
    assert table[0]["random top-1 %"] == pytest.approx(100 / 6, abs=0.05)  # 6 candidates per demo video
    assert UNTRAINED_BANNER in by_type["table"].description
    markdown = by_type["markdown"].data
    assert UNTRAINED_BANNER in markdown and "## Accuracy (labelled videos)" in markdown and "![" not in markdown


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium); the HTML is not rendered")
def test_html_report_renders_in_headless_chromium(pipeline_run, tmp_path):
    out = tmp_path / "html"
    result = invoke("report", "--workdir", pipeline_run.workdir, "--format", "html", "--out", out, "--worst", "1")
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    text = page.read_text()
    assert "<script" not in text and 'src="data:image/png;base64,' in text and "http" not in text.split("<h2>Full configuration")[0]
    assert text.count('<img src="data:image/png;base64,') == 2 + 6  # domain bars, margins, one video's 6 heatmaps
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    assert pixels.size == (1200, 2000)
    histogram = pixels.histogram()
    assert sum(histogram[:200]) > 0.01 * sum(histogram)  # text, tables and plots: not a blank page
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, timeout=120, check=True, text=True).stdout
    for table in ("table-accuracy", "table-by_domain", "table-comparison", "table-disagreements", "table-worst_errors", "table-predictions"):
        assert f'id="{table}"' in dom, table
    assert 'id="model-banner"' in dom and "UNTRAINED MODEL" in dom
    check_figures_in_chromium(text, flags, tmp_path)


def check_figures_in_chromium(page: str, flags: list[str], tmp_path: Path) -> None:
    """Every figure of the page, stacked at its own size on one page and screenshot: each region of the
    screenshot shows its figure as drawn (decoded whole, nothing clipped or blank), at 150 dpi or more."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    sources = re.findall(r'<img src="(data:image/png;base64,[^"]+)"', page)
    figures = [Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) for src in sources]
    for figure in figures:
        assert round(figure.info["dpi"][0]) >= 150 and figure.width >= 1200, (figure.info, figure.size)
    stacked = tmp_path / "figures.html"
    stacked.write_text("<html><body style='margin:0;background:#fff'>"
                       + "".join(f"<img style='display:block' src='{src}'>" for src in sources) + "</body></html>")
    width, height = max(f.width for f in figures), sum(f.height for f in figures)
    shot = tmp_path / "figures.png"
    subprocess.run([CHROMIUM, *flags, "--hide-scrollbars", "--force-device-scale-factor=1", f"--screenshot={shot}",
                    f"--window-size={width},{height}", stacked.as_uri()], capture_output=True, timeout=120, check=True)
    screen = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    top = 0
    for number, figure in enumerate(figures):
        drawn = np.asarray(figure.convert("L"), dtype=np.float32)
        region = screen[top : top + figure.height, : figure.width]
        assert region.shape == drawn.shape, (number, region.shape, drawn.shape)
        assert (drawn < 128).mean() > 0.005, number  # the figure has ink: axes, labels, bars or cells
        assert np.abs(region - drawn).mean() < 3, number  # shown as drawn
        top += figure.height


def test_cli_report_md_and_json_with_heatmaps(pipeline_run, tmp_path):
    result = invoke("report", "--workdir", pipeline_run.workdir, "--format", "md", "--format", "json", "--out", tmp_path, "--video", "demo-002", "--baseline", "actalign")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["run_id"] == pipeline_run.run_id and doc["banner"] == UNTRAINED_BANNER
    assert doc["method"]["resamples"] == 1000 and doc["method"]["seed"] == 0
    accuracy = doc["tables"]["accuracy"]["rows"]
    assert {r["scorer"] for r in accuracy} == {"actalign", "mean-pool"} and all(0 <= r["top1_boot_lo"] <= r["top1"] <= r["top1_boot_hi"] <= 1 for r in accuracy)
    comparison = doc["tables"]["comparison"]["rows"]
    assert comparison[0]["scorer"] == "actalign" and comparison[0]["baseline"]
    (heat,) = doc["heatmaps"]
    assert heat["video_id"] == "demo-002" and len(heat["paths"]) == 6 and heat["error"] is None
    assert all((tmp_path / p).exists() for p in heat["paths"])
    md = (tmp_path / "report.md").read_text()
    assert "## Comparison with actalign of run" in md and f"figures/heatmaps/{file_stem('demo-002')}/" in md


def test_cli_report_rejects_bad_requests(pipeline_run, tmp_path):
    work = pipeline_run.workdir
    assert invoke("report", "--workdir", work, "--run", "no-such-run", "--out", tmp_path).exit_code == 2
    bad_format = invoke("report", "--workdir", work, "--format", "pdf", "--out", tmp_path)
    assert bad_format.exit_code == 2 and "pdf" in bad_format.output
    bad_video = invoke("report", "--workdir", work, "--video", "nope", "--out", tmp_path)
    assert bad_video.exit_code == 2 and "nope" in bad_video.output
    assert invoke("report", "--workdir", work, "--baseline", "no-scorer", "--out", tmp_path).exit_code == 2
    assert invoke("report", "--workdir", tmp_path / "empty", "--out", tmp_path).exit_code == 2


def test_a_report_copies_the_figures_it_drew_before_and_draws_changed_ones(tmp_path, monkeypatch):
    """An unchanged re-run's report shows the same figures without drawing them; another run's data is drawn."""
    from actalign.queries.report import figures

    workdir = write_workdir(tmp_path / "work", generate())
    first = build_report(workdir, RUN_A, out_dir=tmp_path / "first", worst=0)
    drawn = {f.key: f.path.read_bytes() for f in first.figures}
    assert set(drawn) == {"by_domain", "margins"}

    def refuse(*args):
        raise AssertionError("drawn again")

    monkeypatch.setattr(figures, "margins_figure", refuse)
    monkeypatch.setattr(figures, "domain_bars_figure", refuse)
    again = build_report(workdir, RUN_A, out_dir=tmp_path / "again", worst=0)
    assert {f.key: f.path.read_bytes() for f in again.figures} == drawn
    assert all(f.path.parent == tmp_path / "again" / "figures" for f in again.figures)
    accuracy, by_domain = (again.table(key).rows for key in ("accuracy", "by_domain"))
    renamed = [[{**row, "run_id": "another-run"} for row in rows] for rows in (accuracy, by_domain)]
    copy = figures.plot_domain_bars(*renamed, tmp_path / "renamed.png", workdir.figure_cache_dir)  # a re-run: same figure
    assert copy.read_bytes() == drawn["by_domain"]
    with pytest.raises(AssertionError, match="drawn again"):
        build_report(workdir, RUN_B, out_dir=tmp_path / "other", worst=0)


def test_report_of_a_generated_workdir_with_failures_and_a_comparison(generated, tmp_path):
    report = build_report(generated, RUN_A, compare=[RUN_B], out_dir=tmp_path, worst=1)
    assert report.banner is None  # run A's model is marked trained
    reasons = {(r["stage"], r["reason"]) for r in report.table("left_out").rows}
    assert ("acquire", "PermanentDownloadError") in reasons and ("score", "MissingScriptError") in reasons
    comparison = report.table("comparison").rows
    assert [(r["run_id"], r["scorer"]) for r in comparison] == [(RUN_A, "mean-pool"), (RUN_A, "actalign"), (RUN_B, "actalign")]
    assert report.heatmaps and report.heatmaps[0].error  # no stored embeddings here: the report says why, and still renders
    paths = write_files(report, ("md", "html", "json"))
    md, page, doc = paths["md"].read_text(), paths["html"].read_text(), json.loads(paths["json"].read_text())
    for text in (md, page, json.dumps(doc)):
        assert "hunter2" not in text and "s3cret" not in text  # URL credentials and query are redacted
        assert "llm.local" in text
    assert "not drawn:" in md and "PermanentDownloadError" in page
    assert doc["tables"]["left_out"]["rows"] and doc["tables"]["comparison"]["rows"][2]["n_paired"] > 0
    assert render_markdown(report) == render_markdown(report) and render_json(report) and render_html(report)
    untrained = build_report(generated, RUN_B, out_dir=tmp_path / "b", figures=False)
    assert untrained.banner == UNTRAINED_BANNER and UNTRAINED_BANNER in render_markdown(untrained)
