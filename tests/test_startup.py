"""Commands start at once: what each command imports, read from ``-X importtime`` (not timed).

Help, configuration, queries, reports, garbage collection, status and input errors
must not import torch, transformers or Prefect: those cost seconds before the first
line, and none of these commands needs them. `status` plans without loading weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_queries import RUN_A, generate, write_workdir

HEAVY = ("torch", "transformers", "prefect")
ACTALIGN = [str(Path(sys.executable).parent / "actalign")]  # the installed script, as a user runs it


def imported_modules(args: list[str], cwd: Path, expect: int = 0) -> set[str]:
    """Run ``actalign ARGS`` with ``-X importtime``; the top-level packages it imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run([*ACTALIGN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == expect, f"actalign {' '.join(args)} exited {done.returncode}: {done.stdout[-1500:]} {done.stderr[-3000:]}"
    names = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:") and line.count("|") == 2}
    assert "actalign.cli.main" in names  # the profile really is of the command
    return {name.split(".")[0] for name in names}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir with two runs' scores (no model needed to read them)."""
    return write_workdir(tmp_path_factory.mktemp("startup") / "work", generate()).root


@pytest.fixture(scope="module")
def demo_options(demo_dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Options of a run on the demo set with tiny-random, built (not loaded) in the session's model cache."""
    from actalign.tiny_model import tiny_random_path

    tiny_random_path()
    manifest, classes = demo_dataset
    return ["--videos", str(manifest), "--classes", str(classes), "--model", "tiny-random", "--workdir", str(tmp_path_factory.mktemp("status"))]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["run", "--help"], 0),
        (["run", "--fps", "many"], 2),  # a typo in an option
        (["sql", "SELECT count(*) FROM scores", "--workdir", "{workdir}"], 0),
        (["sql", "SELECT * FROM no_such_view", "--workdir", "{workdir}"], 2),
        (["gc", "--dry-run", "--workdir", "{workdir}"], 0),
        (["report", "--run", RUN_A, "--worst", "1", "--out", "{tmp}/report", "--workdir", "{workdir}"], 0),
        (["report", "--run", "no-such-run", "--workdir", "{workdir}"], 2),
    ],
    ids=["help", "version", "run-help", "option-typo", "sql", "sql-error", "gc", "report", "report-unknown-run"],
)
def test_commands_import_no_torch_transformers_or_prefect(args: list[str], expect: int, workdir: Path, tmp_path: Path):
    args = [arg.format(workdir=workdir, tmp=tmp_path) for arg in args]
    assert not imported_modules(args, tmp_path, expect) & set(HEAVY)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_config_and_input_errors_import_none_of_them(demo_options: list[str], tmp_path: Path):
    assert not imported_modules(["config", *demo_options], tmp_path) & set(HEAVY)
    missing = ["--videos", str(tmp_path / "missing.csv"), *demo_options[2:]]
    assert not imported_modules(["run", *missing], tmp_path, expect=2) & set(HEAVY)
    assert not imported_modules(["status", *missing], tmp_path, expect=2) & set(HEAVY)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_status_plans_without_loading_the_model(demo_options: list[str], tmp_path: Path):
    """The plan names the model's identity as a run computes it, read from the files alone."""
    assert not imported_modules(["status", *demo_options], tmp_path) & set(HEAVY)
    done = subprocess.run([*ACTALIGN, "status", *demo_options], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "never computed" in done.stdout and "UNTRAINED MODEL" in done.stdout, done.stdout
    assert done.stdout.startswith("6 videos, 6 classes")


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_limit_takes_the_first_videos_and_is_part_of_the_config(demo_options: list[str], tmp_path: Path):
    done = subprocess.run([*ACTALIGN, "status", *demo_options, "--limit", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("2 videos, 6 classes"), done.stdout + done.stderr
    config = subprocess.run([*ACTALIGN, "config", *demo_options, "--limit", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "\nlimit: 2\n" in config.stdout
    refused = subprocess.run([*ACTALIGN, "status", *demo_options, "--limit", "0"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--limit" in refused.stderr


def test_a_revision_applies_to_hub_models_only(demo_options: list[str], tmp_path: Path):
    done = subprocess.run([*ACTALIGN, "status", *demo_options, "--revision", "v2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--revision 'v2' applies to Hugging Face hub models only" in " ".join(done.stderr.split()), done.stderr
