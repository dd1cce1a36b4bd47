"""The Python API as a notebook meets it: the README's example, a real run, its tables, its errors, a cheap import.

Real Prefect flows, Parquet and DuckDB; the tiny untrained model, so only plumbing is checked, never accuracy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import actalign
from actalign.errors import InputError
from actalign.scorers import DEFAULT_SCORERS

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent  # the venv's actalign command


def readme_example() -> str:
    """The first python block under the README's "Python API" heading."""
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_example_runs_as_written_and_prints_no_warning(tmp_path: Path):
    """In a fresh process, as a user would: its own temporary Prefect server, the library's default logging."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env.update(HF_HUB_OFFLINE="1", PREFECT_HOME=str(tmp_path / "prefect"))
    prepared = subprocess.run([BIN / "actalign", "demo", "--prepare-only", "--workdir", "actalign-demo"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    example = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840)
    assert example.returncode == 0, example.stderr
    assert [line for line in example.stderr.splitlines() if "warning" in line.lower()] == []
    assert "caveat: UNTRAINED MODEL" in example.stdout and "top-1: actalign" in example.stdout


@pytest.fixture(scope="module")
def results(demo_dataset, tmp_path_factory, prefect_harness) -> actalign.Results:
    manifest, classes = demo_dataset
    return actalign.run(manifest, classes, model="tiny-random", workdir=tmp_path_factory.mktemp("api") / "work", limit=3)


def test_run_returns_the_run_and_its_tables(results: actalign.Results):
    assert results.state == "completed" and results.model == "tiny-random"
    assert results.report is not None and results.report == results.workdir / "runs" / results.run_id / "report.md" and results.report.is_file()
    assert "UNTRAINED" in results.caveat and "meaningless" in results.caveat
    accuracy, predictions, scores = results.accuracy, results.predictions, results.scores
    assert all(isinstance(table, pa.Table) for table in (accuracy, predictions, scores))
    assert sorted(accuracy.column("scorer").to_pylist()) == sorted(DEFAULT_SCORERS) and accuracy.column("n").to_pylist() == [3, 3]
    # predictions: one row per (video, scorer); scores: one per (video, candidate, scorer), 6 candidates each
    assert sorted(predictions.column("scorer").to_pylist()) == sorted(DEFAULT_SCORERS * 3)
    assert scores.num_rows == 3 * 6 * len(DEFAULT_SCORERS) and set(scores.column("run_id").to_pylist()) == {results.run_id}
    assert results.sql("SELECT CAST(config->>'limit' AS INTEGER) AS n FROM runs WHERE run_id = ?", results.run_id).to_pylist() == [{"n": 3}]
    shown = repr(results)
    assert all(part in shown for part in (results.run_id, "completed", "tiny-random", "UNTRAINED MODEL", "actalign", "mean-pool"))


def test_open_workdir_finds_the_run_again(results: actalign.Results):
    assert actalign.open_workdir(results.workdir).run_id == results.run_id
    assert actalign.open_workdir(results.workdir, results.run_id) == results
    with pytest.raises(InputError, match="has no run 'no-such-run'"):
        actalign.open_workdir(results.workdir, "no-such-run")


def test_open_workdir_refuses_a_folder_that_is_not_a_workdir(tmp_path: Path):
    with pytest.raises(InputError, match=f"{tmp_path / 'nowhere'} does not exist"):
        actalign.open_workdir(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not an actalign workdir"):
        actalign.open_workdir(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing laid out in a folder that was not a workdir


def test_bad_options_raise_one_value_error_naming_the_field(demo_dataset, tmp_path: Path):
    manifest, classes = demo_dataset
    with pytest.raises(ValueError, match="fps") as refused:
        actalign.run(manifest, classes, model="tiny-random", workdir=tmp_path / "work", fps=-1)
    assert type(refused.value) is ValueError and refused.value.__cause__ is None  # one message, not pydantic's
    with pytest.raises(ValueError, match="no_such_option: Extra inputs are not permitted"):
        actalign.run(manifest, classes, model="tiny-random", workdir=tmp_path / "work", no_such_option=1)
    assert not (tmp_path / "work").exists()


def test_a_missing_videos_file_raises_input_error_before_any_work(demo_dataset, tmp_path: Path):
    _, classes = demo_dataset
    with pytest.raises(InputError, match="nope.csv"):
        actalign.run(tmp_path / "nope.csv", classes, model="tiny-random", workdir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_import_actalign_loads_no_heavy_library():
    """The API's names are there, and resolving none of them imports torch, transformers, Prefect or DuckDB."""
    imported = subprocess.run([sys.executable, "-X", "importtime", "-c", "import actalign; print(dir(actalign))"], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in imported.stderr.splitlines() if line.startswith("import time:")}
    assert "actalign" in modules and not modules & {"torch", "transformers", "prefect", "duckdb"}
    assert all(repr(name) in imported.stdout for name in ("run", "open_workdir", "Results"))


def test_tables_convert_to_pandas_when_it_is_installed(results: actalign.Results):
    pytest.importorskip("pandas")
    frame = results.accuracy.to_pandas()
    assert sorted(frame["scorer"]) == sorted(DEFAULT_SCORERS) and list(frame["n"]) == [3, 3]
