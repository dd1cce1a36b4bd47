"""What is installed and which code runs: for ``actalign --version`` and for bug reports.

Reads package metadata only, never imports the packages: torch and prefect take
seconds to import, and a version check must work even when one of them is broken.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import actalign

PACKAGES = ("actalign", "torch", "transformers", "prefect", "duckdb")
VERSION_TEXT_PACKAGES = ("actalign", "torch", "transformers", "prefect")
GIT_TIMEOUT_S = 5.0


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, None for one that is not installed (results depend on these pins)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(start: Path | None = None) -> str | None:
    """HEAD of the checkout the code runs from, with "-dirty" for uncommitted changes; None when not a checkout.

    ``start`` defaults to the folder of the running actalign package. It must be tracked by
    the repository: a wheel installed into a virtualenv that sits inside some checkout
    (site-packages is untracked there) is not that checkout's code. Never raises.
    """
    folder = Path(actalign.__file__).parent if start is None else start

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "--", ".") is None:
        return None
    head, status = git("rev-parse", "HEAD"), git("status", "--porcelain")
    if head is None or status is None:
        return None
    return head.strip() + ("-dirty" if status.strip() else "")


def version_text() -> str:
    """The lines ``actalign --version`` prints: actalign and the libraries its numbers depend on."""
    return "\n".join(f"{name} {found or 'not installed'}" for name, found in package_versions(VERSION_TEXT_PACKAGES).items())
