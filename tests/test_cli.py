"""The command line as a user meets it: help, exit codes, error messages, SQL."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_run_help_documents_every_option():
    result = invoke("run", "--help")
    assert result.exit_code == 0
    for option in ("--videos", "--classes", "--model", "--workdir", "--scorer", "--fps", "--smoothing", "--device", "--batch-size", "--bf16", "--shard-size", "--workers"):
        assert option in result.output


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def demo_rows(demo_dataset):
    manifest, _ = demo_dataset
    rows = list(csv.DictReader(open(manifest)))
    for row in rows:
        row["path"] = str(manifest.parent / row["path"])
    return rows


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown class", "unknown label class 'no-such-class'"),
        ("empty manifest", "lists no videos"),
        ("class without steps", "has no steps"),
        ("unknown model", "google/siglip-does-not-exist"),
        ("missing classes file", "classes file not found"),
        ("bad fps", "fps"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message_and_no_run(case, message, demo_dataset, demo_rows, tmp_path):
    _, classes = demo_dataset
    manifest = write_manifest(tmp_path / "m.csv", demo_rows)
    extra: list[str] = ["--model", "tiny-random"]
    if case == "unknown class":
        manifest = write_manifest(tmp_path / "m.csv", [{**demo_rows[0], "label": "no-such-class"}])
    elif case == "empty manifest":
        manifest.write_text("video_id,path\n")
    elif case == "class without steps":
        classes = tmp_path / "c.yaml"
        classes.write_text("classes:\n  - {id: red-blue-yellow, action: red first}\n")
        manifest = write_manifest(tmp_path / "m.csv", [{**demo_rows[0], "label": "red-blue-yellow", "candidates": ""}])
    elif case == "unknown model":
        extra = ["--model", "google/siglip-does-not-exist"]
    elif case == "missing classes file":
        classes = tmp_path / "nope.yaml"
    elif case == "bad fps":
        extra += ["--fps", "0"]
    result = invoke("run", "--videos", manifest, "--classes", classes, "--workdir", tmp_path / "work", *extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "work" / "runs").exists()  # nothing started, nothing that looks like a result


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_video_gives_exit_1_and_a_failure_table(demo_dataset, demo_rows, tmp_path):
    _, classes = demo_dataset
    rows = [demo_rows[0], {**demo_rows[1], "path": str(tmp_path / "missing.mp4")}]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    workdir = tmp_path / "work"
    result = invoke("run", "--videos", manifest, "--classes", classes, "--workdir", workdir, "--model", "tiny-random")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "VideoNotFoundError" in text and "UNTRAINED MODEL" in text and "Accuracy" in text

    sql = invoke("sql", "SELECT video_id, state FROM status WHERE stage = 'acquire' ORDER BY video_id", "--workdir", workdir)
    assert sql.exit_code == 2  # status has 'item', not 'video_id': the user sees DuckDB's message
    assert "video_id" in sql.output
    sql = invoke("sql", "SELECT item, state FROM status WHERE stage = 'acquire' ORDER BY item", "--workdir", workdir)
    assert sql.exit_code == 0
    assert "demo-000" in sql.output and "ok" in sql.output and "failed" in sql.output


def test_scripts_dry_run_counts_requests_and_sends_nothing(demo_dataset, demo_rows, tmp_path, monkeypatch):
    """Step-less classes and two distinct candidate sets: two question requests (or one per class)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a dry run needs no key
    classes = tmp_path / "classes.yaml"
    classes.write_text("classes:\n" + "".join(f"  - {{id: c{i}, action: Move {i}, domain: dance}}\n" for i in range(4)))
    rows = [{**row, "label": "", "candidates": "c0|c1|c2" if n % 2 else "c1|c2|c3"} for n, row in enumerate(demo_rows)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    question = invoke("scripts", "--dry-run", "--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w")
    assert question.exit_code == 0, question.output
    assert "2 LLM request(s) to send for 6 script(s)" in " ".join(question.output.split())
    per_class = invoke("scripts", "--dry-run", "--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w", "--granularity", "class")
    assert "4 LLM request(s) to send for 4 script(s)" in " ".join(per_class.output.split())
    assert invoke("scripts", "--videos", manifest, "--classes", classes).exit_code == 2
