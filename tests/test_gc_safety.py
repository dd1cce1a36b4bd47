"""`actalign gc` on a hostile or shared workdir, run as the installed command: it deletes only inside
store/, cache/ and quarantine/, never through a symlink, and lists what it deletes relative to the workdir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from actalign.storage import schemas
from actalign.storage.parquet import write_atomic
from actalign.storage.workdir import Workdir

ACTALIGN = Path(sys.executable).parent / "actalign"  # the installed script, as a user runs it
RUN = "20260101-000000-abc123"


def parquet(path: Path) -> Path:
    """A real store file: frame embeddings of one frame."""
    row = {"video_id": "v", "frame_idx": 0, "t_s": 0.0, "embedding": [0.6, 0.8], "model": "m", "frames_key": path.stem}
    return write_atomic(pa.Table.from_pylist([row], schema=schemas.FRAME_EMBEDDINGS), path)


@pytest.fixture
def workdir(tmp_path: Path) -> Workdir:
    """One run whose plan references store/frame_embeddings/kept.parquet; old.parquet is referenced by no run."""
    workdir = Workdir.open(tmp_path / "work")
    plan = {"plan_id": "p", "run_id": RUN, "stage": "acquire", "item": "v", "key": "kept", "path": "store/frame_embeddings/kept.parquet", "state": "fresh"}
    write_atomic(pa.Table.from_pylist([plan], schema=schemas.PLANS), workdir.plan_path(RUN))
    for key in ("kept", "old"):
        parquet(workdir.frames_path(key))
    return workdir


def gc(workdir: Workdir, *options: str) -> list[str]:
    """The paths `actalign gc` lists as deleted (or, with --dry-run, as would be deleted)."""
    done = subprocess.run([str(ACTALIGN), "gc", "--workdir", str(workdir.root), *options], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(workdir.root) not in done.stdout
    prefix = "would delete " if options else "delete "
    return sorted(line.removeprefix(prefix) for line in done.stdout.splitlines() if line.startswith(prefix))


def files(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_symlinks_are_deleted_as_links_and_their_targets_outside_the_workdir_survive(workdir: Workdir, tmp_path: Path):
    outside = tmp_path / "outside"
    victim = parquet(outside / "victim.parquet")
    parquet(outside / "folder" / "deep.parquet")  # store/*/*.parquet through a linked folder: what gc deleted before
    (outside / "folder" / ".half.parquet.0123.tmp").write_bytes(b"not ours")
    links = {
        workdir.frames_path("evil"): victim,  # a store entry that no run references
        workdir.store_dir / "linked_kind": outside / "folder",  # a folder: never entered
        workdir.quarantine_dir / "store" / "frame_embeddings" / "x.parquet": victim,
        workdir.text_cache_dir / ".x.tmp": victim,
    }
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    before = files(outside)
    expected = sorted(str(path.relative_to(workdir.root)) for path in (*links, workdir.frames_path("old")))

    assert gc(workdir, "--dry-run") == expected
    assert all(link.is_symlink() for link in links) and workdir.frames_path("old").is_file()
    assert gc(workdir) == expected
    assert files(outside) == before
    assert not [link for link in links if os.path.lexists(link)]
    assert workdir.frames_path("kept").is_file() and not workdir.frames_path("old").exists()


def test_temporary_files_outside_the_store_cache_and_quarantine_survive(workdir: Workdir):
    yours = [
        workdir.media_dir / ".x.tmp",
        workdir.media_dir / ".partial" / "key" / ".x.tmp",
        workdir.root / "mine" / ".x.tmp",
        workdir.root / "mine" / "deep" / ".notes.md.tmp",
    ]
    ours = [workdir.frames_path("kept").with_name(".kept.parquet.0123.tmp"), workdir.text_cache_dir / "m" / ".digest.0123.tmp"]
    for path in (*yours, *ours):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")

    assert gc(workdir) == sorted(str(path.relative_to(workdir.root)) for path in (*ours, workdir.frames_path("old")))
    assert all(path.read_bytes() == b"half" for path in yours)
    assert not [path for path in ours if path.exists()]
