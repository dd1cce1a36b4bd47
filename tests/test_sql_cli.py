"""`actalign sql`: output formats read back, a wide table in a narrow terminal, named queries, --list, bad input."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from terminal import run_in_terminal
from test_queries import generate, write_workdir
from typer.testing import CliRunner

from actalign.cli.main import app

runner = CliRunner()
ACTALIGN = Path(sys.executable).with_name("actalign")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return write_workdir(tmp_path_factory.mktemp("sqlcli") / "work", generate()).root


def sql(workdir: Path, *args: str):
    return runner.invoke(app, ["sql", "--workdir", str(workdir), *args], env={"COLUMNS": "60"})


def test_csv_json_jsonl_parquet_read_back(workdir, tmp_path):
    query = "SELECT run_id, scorer, n, top1 FROM accuracy ORDER BY run_id, scorer"
    rows = list(csv.DictReader(io.StringIO(sql(workdir, query, "--format", "csv").stdout)))
    assert [r["scorer"] for r in rows] == ["actalign", "mean-pool", "actalign"] and float(rows[0]["top1"]) > 0
    assert json.loads(sql(workdir, query, "--format", "json").stdout)[1]["scorer"] == "mean-pool"
    lines = sql(workdir, query, "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["n"] for line in lines] == [int(r["n"]) for r in rows]
    out = tmp_path / "acc.parquet"
    result = sql(workdir, query, "--format", "parquet", "--out", str(out))
    assert result.exit_code == 0 and str(out) in result.stdout.splitlines()
    assert pq.read_table(out).to_pylist()[0] == {"run_id": rows[0]["run_id"], "scorer": "actalign", "n": int(rows[0]["n"]), "top1": float(rows[0]["top1"])}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_markdown_escapes_cells_and_out_replaces_a_file(workdir, tmp_path):
    out = tmp_path / "t.md"
    out.write_text("old")
    assert sql(workdir, "SELECT 'a|b*' AS x", "--format", "markdown", "--out", str(out)).exit_code == 0
    assert out.read_text().splitlines() == ["| x |", "|---|", "| a\\|b\\* |"]
    assert out.stat().st_mode & 0o777 == 0o644 and sorted(p.name for p in tmp_path.iterdir()) == ["t.md"]


def test_piped_table_is_never_cut(workdir):
    result = sql(workdir, "SELECT * FROM accuracy")
    header = next(line for line in result.stdout.splitlines() if "run_id" in line)
    for column in ("run_id", "n_labelled", "top1_lo", "top3_hi", "random_top3"):
        assert f" {column} " in header
    assert "…" not in result.stdout and "left out" not in result.stdout


def test_wide_table_in_a_narrow_terminal_leaves_columns_out_and_says_which(workdir):
    """A real pseudo-terminal 60 columns wide: whole headers, and a note naming the columns not shown."""
    code, text = run_in_terminal([ACTALIGN, "sql", "--workdir", workdir, "SELECT * FROM accuracy"], columns=60)
    assert code == 0, text
    lines = text.splitlines()
    assert all(len(line) <= 60 for line in lines), text
    header = next(line for line in lines if "run_id" in line)
    assert " scorer " in header and " n_labelled " in header and "…" not in header
    note = " ".join(lines[lines.index(next(line for line in lines if "left out" in line)):])
    assert "random_top3" in note and "top1_lo" in note


def test_named_query_with_parameters(workdir):
    run = sql(workdir, "--named", "latest_run", "--format", "csv").stdout.splitlines()[1]
    result = sql(workdir, "--named", "worst_errors", "--param", f"run_id={run}", "--param", "scorer=actalign", "--param", "limit=2", "--format", "json")
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and all(r["true_rank"] > 1 for r in rows) and rows[0]["margin"] <= rows[1]["margin"]
    both = sql(workdir, "--named", "accuracy", "--param", f"runs={run},nosuch", "--format", "jsonl").stdout.splitlines()
    assert {json.loads(line)["run_id"] for line in both} == {run}


def test_list_names_views_and_named_queries_with_descriptions(workdir):
    text = sql(workdir, "--list").stdout
    for view in ("videos", "frame_embeddings", "accuracy", "accuracy_by_domain", "left_out", "latest_freshness"):
        assert f"│ {view} " in text
    assert "one row per (run, scorer) of a run with labelled" in text
    assert "worst_errors" in text and "run_id, scorer, limit" in text
    assert "│ macros" not in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--named", "nope"], "known: accuracy"),
        (["--named", "worst_errors", "--param", "run_id=x"], "missing --param scorer=..., limit=..."),
        (["--named", "failures", "--param", "colour=red"], "takes run_id"),
        (["--named", "worst_errors", "--param", "run_id=x", "--param", "scorer=a", "--param", "limit=many"], "whole number"),
        (["SELECT 1", "--format", "parquet"], "add --out FILE"),
        (["SELECT * FROM nosuch_view"], "query failed"),
        ([], "either a SQL query or --named"),
    ],
)
def test_bad_input_exits_2_naming_it(workdir, args, message):
    result = sql(workdir, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
