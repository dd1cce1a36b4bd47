"""The command line as a user meets it: help, exit codes, error messages, SQL."""

from __future__ import annotations

import csv
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actalign.cli.main import app

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


def narrow(*args: object):
    """The CLI as a 40-column, non-TTY terminal (a pipe, a CI log) sees it."""
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "40", "TERM": "dumb"})


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_video_gives_exit_1_and_its_path_whole_on_a_narrow_pipe(demo_dataset, demo_rows, tmp_path):
    _, classes = demo_dataset
    missing = tmp_path / "a folder with a rather long name" / "nosuch-video-file-name.mp4"
    rows = [demo_rows[0], {**demo_rows[1], "path": str(missing)}]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    workdir = tmp_path / "work"
    result = narrow("run", "--videos", manifest, "--classes", classes, "--workdir", workdir, "--model", "tiny-random")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "VideoNotFoundError" in text and "UNTRAINED MODEL" in text and "Accuracy" in text
    lines = [line.strip() for line in result.output.splitlines()]
    assert any(str(missing) in line for line in lines), result.output  # whole on one line, however narrow the terminal
    report = lines[lines.index("report:") + 1]
    assert Path(report).is_file() and report.endswith("report.md")
    command = shlex.split(lines[lines.index("query the results:") + 1])  # pasted into a shell as printed
    assert command == ["actalign", "sql", "--workdir", str(workdir.resolve()), "SELECT * FROM accuracy"]
    assert invoke(*command[1:]).exit_code == 0

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


def test_config_prints_the_full_configuration_and_reads_it_back(tmp_path):
    """`actalign config` prints every RunConfig field; `--config FILE` reads it back, options beside it override."""
    import yaml

    from actalign.config import RunConfig

    printed = invoke("config", "--videos", "v.csv", "--classes", "c.yaml", "--fps", "2", "--proxy", "http://user:pw@proxy:3128")
    assert printed.exit_code == 0, printed.output
    fields = yaml.safe_load(printed.output)
    assert set(fields) == set(RunConfig.model_fields)
    assert fields["fps"] == 2.0 and fields["prompts"]["steps"] == "context-rich" and "pw@proxy" not in printed.output
    saved = tmp_path / "run.yaml"
    saved.write_text(printed.output)
    again = yaml.safe_load(invoke("config", "--config", saved, "--smoothing", "3").output)
    assert again == {**fields, "smoothing": 3}
    deployment_style = tmp_path / "params.yaml"
    deployment_style.write_text(yaml.safe_dump({"config": fields}))
    assert yaml.safe_load(invoke("config", "--config", deployment_style).output) == fields
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**fields, "fps": -1}))
    refused = invoke("config", "--config", bad)
    assert refused.exit_code == 2 and "fps" in refused.output
    older = tmp_path / "older.yaml"  # written before the prompts were one field
    older.write_text(yaml.safe_dump({"videos": "v.csv", "classes": "c.yaml", "attribute_prompt": "mine.yaml", "llm": {"prompt": "short-fixed"}}))
    moved = invoke("config", "--config", older)
    said = " ".join(moved.output.split())
    assert moved.exit_code == 2 and "attribute_prompt -> prompts.attributes" in said and "llm.prompt -> prompts.steps" in said


def test_status_and_gc_refuse_bad_input_with_exit_code_2(tmp_path):
    missing = invoke("status", "--videos", tmp_path / "nope.csv", "--classes", tmp_path / "nope.yaml", "--model", "tiny-random", "--workdir", tmp_path / "w")
    assert missing.exit_code == 2 and "nope" in missing.output
    assert not (tmp_path / "w").exists()  # nothing written for a status that could not plan
    gone = invoke("gc", "--workdir", tmp_path / "no-such-workdir")
    assert gone.exit_code == 2 and "does not exist" in gone.output


def test_demo_fallback_prints_a_hostile_model_name_as_text_not_markup():
    from actalign.cli.demo import loadable_model
    from actalign.cli.display import console

    with console.capture() as captured:
        chosen = loadable_model("[bold]no/such[/]")
    assert chosen == "toy-shapes"
    text = " ".join(captured.get().split())
    assert "'[bold]no/such[/]' cannot be loaded" in text and "Running the demo with toy-shapes" in text


@pytest.mark.usefixtures("prefect_harness")
def test_an_unlabelled_folder_prints_predictions_with_score_and_margin_and_no_accuracy(demo_dataset, demo_rows, tmp_path):
    _, classes = demo_dataset
    folder = tmp_path / "videos"
    folder.mkdir()
    for row in demo_rows[:2]:
        shutil.copy(row["path"], folder)
    args = ["run", "--videos", folder, "--classes", classes, "--workdir", tmp_path / "work", "--model", "tiny-random", "--scorer", "actalign"]
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "160", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "no labels: accuracy not computed" in text and "Accuracy over labelled videos" not in text
    assert "margin over the runner-up" in text
    scores = invoke("sql", "--workdir", tmp_path / "work", "--format", "csv",
                    "SELECT video_id, predicted, top_score FROM predictions ORDER BY video_id")
    for video_id, predicted, top in (line.split(",") for line in scores.output.splitlines()[1:]):
        assert f"{predicted} {float(top):.4g} (+" in text, result.output  # the prediction, its score and its positive margin
