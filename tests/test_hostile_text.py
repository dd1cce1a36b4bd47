"""Hostile text reaching a screen or a document: ids, labels, class names, step texts and SQL values that look like
rich markup or HTML are shown as the literal text, never interpreted (issue 15).

Before the fix, ``[/]`` in any printed value crashed the CLI with rich's MarkupError (after a finished run, before
its predictions), ``[bold]x`` lost its brackets, and report.md and the Prefect ``actalign-report`` artifact carried
``<img src=x onerror=...>`` raw into every Markdown viewer. One real run (the `actalign` script, tiny-random) on the
demo videos with hostile names feeds every test here but the first.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from actalign.queries.report.build import build_report
from actalign.queries.report.html_page import render_html
from actalign.queries.report.markdown import render_markdown
from actalign.storage.workdir import Workdir
from actalign.tasks.artifacts import artifact_description, artifact_table

ACTALIGN = [str(Path(sys.executable).parent / "actalign")]  # the installed script, as a user runs it
IMG = "<img src=x onerror=alert(1)>"
SVG = "<svg onload=alert(2)>"
VIDEO_IDS = ["[x] id", IMG, "a|b & c"]  # valid ids (no '/', '\' or control characters); the rest keep demo-00N
CLASS_IDS = ["[bold]c1", SVG]  # the first two demo classes; the others keep their ids
ACTION = "[/oops] red first"  # the first class's name; video 0's label names it
STEP_PREFIX = "[/] "  # every step of the first class starts with it


def actalign(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``actalign ARGS`` as a user runs it; wide columns so a table never wraps a value."""
    env = {**os.environ, "COLUMNS": "300", **(env or {})}
    return subprocess.run([*ACTALIGN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def hostile_run(demo_dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """(workdir, finished `actalign run`) of the demo videos renamed with markup and HTML: a whole run with
    its temporary Prefect server, over 20 s, so the tests using it are marked slow."""
    from actalign.tiny_model import tiny_random_path

    tiny_random_path()  # built once in the session's model cache, which the subprocess inherits
    manifest, classes_file = demo_dataset
    root = tmp_path_factory.mktemp("hostile")
    classes = yaml.safe_load(classes_file.read_text())["classes"]
    renamed = {entry["id"]: new for entry, new in zip(classes, CLASS_IDS)}
    for entry in classes:
        entry["id"] = renamed.get(entry["id"], entry["id"])
    classes[0]["action"] = ACTION
    classes[0]["steps"] = [STEP_PREFIX + step for step in classes[0]["steps"]]
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": classes}))
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows):
        row["path"] = str(manifest.parent / row["path"])
        row["video_id"] = VIDEO_IDS[number] if number < len(VIDEO_IDS) else row["video_id"]
        row["label"] = renamed.get(row["label"], row["label"])
    rows[0]["label"] = ACTION
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    workdir = root / "work"
    done = actalign(
        "run", "--videos", str(root / "manifest.csv"), "--classes", str(root / "classes.yaml"), "--model", "tiny-random", "--workdir", str(workdir),
        cwd=root, env={"PREFECT_HOME": str(root / "prefect"), "HF_HUB_OFFLINE": "1"},
    )
    return workdir, done


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_sql_prints_markup_as_text(tmp_path: Path):
    query = "SELECT '[/]' AS a, '[link=http://x]y[/link]' AS b, '[bold]z' AS c, 1 AS \"[/x]\""
    done = actalign("sql", "--workdir", str(tmp_path / "work"), query, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("[/]", "[link=http://x]y[/link]", "[bold]z", "[/x]"):
        assert text in done.stdout, done.stdout
    failed = actalign("sql", "--workdir", str(tmp_path / "work"), "SELECT '[/]' FROM no_such_view", cwd=tmp_path)
    assert failed.returncode == 2 and "MarkupError" not in failed.stderr, failed.stderr[-3000:]
    assert "error:" in failed.stderr and "SELECT '[/]' FROM no_such_view" in failed.stderr  # DuckDB's message quotes the query


@pytest.mark.slow
def test_a_run_with_hostile_names_prints_its_predictions_as_text(hostile_run):
    workdir, done = hostile_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    predictions = done.stdout.split("Predictions (* = correct")[1].split("Accuracy over labelled videos")[0]
    for text in (*VIDEO_IDS, *CLASS_IDS):
        assert text in predictions, text
    steps = actalign("sql", "--workdir", str(workdir), f"SELECT DISTINCT action, text FROM scripts WHERE class_id = '{CLASS_IDS[0]}'", cwd=workdir)
    assert steps.returncode == 0, steps.stderr[-3000:]
    assert ACTION in steps.stdout and f"{STEP_PREFIX}a red circle" in steps.stdout


class Tags(HTMLParser):
    """Every element of a page: (tag, attributes)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data


def assert_inert(page: str) -> None:
    """No element the data made: no handler attribute, no svg, an image only of our own figures; the data reads as text."""
    tags = Tags(page)
    assert not [(tag, attrs) for tag, attrs in tags.elements if tag == "svg" or any(name.startswith("on") for name in attrs)]
    assert all(attrs.get("src", "").startswith(("figures/", "data:image/png")) for tag, attrs in tags.elements if tag == "img")
    assert IMG in tags.text and SVG in tags.text


@pytest.mark.slow
def test_report_md_carries_no_raw_html(hostile_run):
    workdir, _ = hostile_run
    (report,) = (workdir / "runs").glob("*/report.md")
    text = report.read_text()
    assert "<img" not in text and "<svg" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert_inert(MarkdownIt("commonmark").enable("table").render(text))  # a viewer that passes raw HTML through


@pytest.mark.slow
def test_markdown_html_and_artifacts_escape_cells_headings_and_notes(hostile_run, tmp_path: Path):
    workdir, _ = hostile_run
    report = build_report(Workdir.open(workdir), videos=[IMG], out_dir=tmp_path)  # heatmaps of the hostile video
    hostile = f"{IMG} a|b & [x](javascript:alert(3))"
    report.title = report.tables[0].title = report.tables[0].note = report.banner = hostile
    report.notes.append(hostile)
    report.table("accuracy").rows[0]["scorer"] = hostile
    report.summary = [(what, hostile if what == "model" else value) for what, value in report.summary]
    markdown = render_markdown(report)
    escaped = "&lt;img src=x onerror=alert(1)&gt; a\\|b &amp; \\[x\\](javascript:alert(3))"
    assert f"# {escaped}\n" in markdown and f"## {escaped}\n" in markdown and f"_{escaped}_" in markdown and f"> **{escaped}**" in markdown
    assert f"| {escaped} |" in markdown  # a table cell: the '|' does not split it
    rendered = MarkdownIt("commonmark").enable("table").render(markdown)
    assert_inert(rendered)
    assert "<a " not in rendered and "a|b &amp; [x](javascript:alert(3))" in rendered  # reads as typed, links nothing
    assert_inert(render_html(report))
    assert_inert(MarkdownIt("commonmark").render(render_markdown(report, images=False)))
    description = artifact_description(report)
    assert "<" not in description and escaped in description
    assert artifact_table(report)[0]["scorer"] == escaped  # Prefect's UI renders each string cell as Markdown
