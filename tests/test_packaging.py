"""Packaging: the wheel and sdist hold the one `actalign` package, and the installed wheel works outside the checkout.

The slow tests build from the repository itself and install the wheel into a fresh virtualenv
(no editable install, no repository on sys.path); its dependencies come from this environment
through a .pth line, so nothing big is downloaded.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from actalign.versions import git_commit, package_versions, version_text

REPO = Path(__file__).resolve().parents[1]
WHEEL = "actalign-0.1.0-py3-none-any.whl"
SDIST = "actalign-0.1.0.tar.gz"
HEAVY = {"torch", "transformers", "prefect", "duckdb"}


def _tail(text: str | bytes | None, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def run(*cmd: str | Path, cwd: Path, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` without PYTHONPATH; fail the test with its stderr tail when it times out or (``check``) fails."""
    argv = [str(part) for part in cmd]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{argv} timed out after {timeout} s; stderr tail:\n{_tail(exc.stderr)}")
    assert not check or done.returncode == 0, f"{argv} exited {done.returncode}; stderr tail:\n{_tail(done.stderr)}"
    return done


# --- actalign.versions (fast) -------------------------------------------------------------------


def test_package_versions_match_metadata():
    found = package_versions()
    assert list(found) == ["actalign", "torch", "transformers", "prefect", "duckdb"]
    assert found == {name: version(name) for name in found}


def test_package_versions_none_when_not_installed():
    assert package_versions(["actalign-no-such-package"]) == {"actalign-no-such-package": None}


def test_version_text_names_the_libraries():
    assert version_text().splitlines() == [f"{name} {version(name)}" for name in ("actalign", "torch", "transformers", "prefect")]


def test_git_commit_of_this_checkout():
    if not (REPO / ".git").exists():
        pytest.skip("the tests do not run from a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", git_commit() or ""), git_commit()


def test_git_commit_none_outside_a_repository(tmp_path):
    assert git_commit(tmp_path) is None


def test_versions_module_imports_no_heavy_library():
    done = run(sys.executable, "-X", "importtime", "-c", "import actalign.versions", cwd=REPO, timeout=60)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "actalign.versions" in imported, _tail(done.stderr)
    assert not {name.split(".")[0] for name in imported} & HEAVY


# --- built and installed wheel (slow) ------------------------------------------------------------


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A working folder outside the repository: every packaging subprocess runs here."""
    folder = tmp_path_factory.mktemp("packaging")
    assert REPO not in folder.resolve().parents
    return folder


@pytest.fixture(scope="module")
def dists(outside) -> Path:
    """Folder holding the sdist and the wheel, built from the repository (the wheel from the sdist)."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("the `build` module is not installed (pip install -e '.[test]')")
    out = outside / "dist"
    run(sys.executable, "-m", "build", "--outdir", out, REPO, cwd=outside, timeout=600)
    return out


@pytest.fixture(scope="module")
def fresh(dists, outside) -> Path:
    """A new virtualenv with only the wheel installed; a .pth line lends it this environment's dependencies.

    A path line in a .pth does not run the .pth files of that folder, so the editable
    install's finder (__editable__*.pth) stays off: `actalign` can only come from the wheel.
    """
    venv = outside / "venv"
    run(sys._base_executable, "-m", "venv", venv, cwd=outside, timeout=180)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=outside, timeout=60).stdout.strip())
    deps = Path(sysconfig.get_path("purelib"))
    assert (deps / "torch").is_dir(), deps
    (site / "test-dependencies.pth").write_text(f"{deps}\n")
    # --ignore-installed: this environment's editable actalign is visible through the .pth; never touch it.
    run(python, "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed", dists / WHEEL, cwd=outside, timeout=300)
    return venv


@pytest.mark.slow
@pytest.mark.timeout(1200)
class TestInstalledWheel:
    def test_dists_hold_the_one_package_and_license(self, dists):
        assert (dists / WHEEL).is_file() and (dists / SDIST).is_file(), sorted(p.name for p in dists.iterdir())
        with zipfile.ZipFile(dists / WHEEL) as wheel:
            names = set(wheel.namelist())
            licenses = [name for name in names if re.fullmatch(r"actalign-0\.1\.0\.dist-info/(licenses/)?LICENSE", name)]
            assert licenses, sorted(name for name in names if ".dist-info/" in name)
            assert wheel.read(licenses[0]) == (REPO / "LICENSE").read_bytes()
        expected = {
            "actalign/flows/pipeline.py",
            "actalign/download/fetching.py",
            "actalign/tasks/acquire.py",
            "actalign/storage/workdir.py",
            "actalign/queries/runner.py",
            "actalign/queries/report/build.py",
            "actalign/queries/09_accuracy.sql",
            "actalign/cli/main.py",
            *(f"actalign/prompts/{path.name}" for path in (REPO / "actalign" / "prompts").glob("*.yaml")),
            *(f"actalign/queries/named/{path.name}" for path in (REPO / "queries" / "named").glob("*.sql")),
        }
        assert not expected - names, sorted(expected - names)
        assert {name.split("/")[0] for name in names} == {"actalign", "actalign-0.1.0.dist-info"}
        with tarfile.open(dists / SDIST) as sdist:
            assert "actalign-0.1.0/LICENSE" in sdist.getnames()

    def test_installed_package_comes_from_the_wheel(self, fresh, outside):
        code = "import actalign, actalign.flows.pipeline, actalign.queries.runner as r; print(actalign.__file__); print(r.__file__)"
        files = run(fresh / "bin" / "python", "-c", code, cwd=outside, timeout=300).stdout.split()
        assert files and all(Path(file).is_relative_to(fresh) for file in files), files
        # pip check sees the .pth-lent packages: were they hidden, it would report actalign's torch etc. as missing.
        # Only actalign's lines count: the venv's own old setuptools (from ensurepip) shadows this environment's,
        # and pip check rightly reports that against torch.
        report = run(fresh / "bin" / "python", "-m", "pip", "check", cwd=outside, timeout=120, check=False).stdout
        assert not [line for line in report.splitlines() if line.startswith("actalign ")], report

    def test_sql_reads_packaged_queries(self, fresh, outside):
        done = run(fresh / "bin" / "actalign", "sql", "select 42 as answer", "--workdir", outside / "wd", cwd=outside, timeout=300)
        assert "42" in done.stdout, done.stdout

    def test_version_names_the_libraries(self, fresh, outside):
        out = run(fresh / "bin" / "actalign", "--version", cwd=outside, timeout=300).stdout
        assert "actalign 0.1.0" in out, out
        for name in ("torch", "transformers", "prefect"):
            assert f"{name} {version(name)}" in out, out

    def test_demo_prepares_its_inputs(self, fresh, outside):
        run(fresh / "bin" / "actalign", "demo", "--prepare-only", "--workdir", outside / "demo", cwd=outside, timeout=600)
        manifest = outside / "demo" / "demo-input" / "order" / "manifest.csv"
        assert (manifest.parent / "classes.yaml").is_file()
        with open(manifest, newline="") as handle:
            videos = [manifest.parent / row["path"] for row in csv.DictReader(handle)]
        assert videos
        assert all(video.is_file() and video.stat().st_size > 0 for video in videos), videos
