"""Paths of the workdir, in one place (see the layout in ``storage/__init__``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actalign.storage import schemas
from actalign.storage.parquet import write_atomic
from actalign.storage.safe_paths import contained

# Zero-row files (and a run folder of them) named so, so the views answer on an empty workdir. A dot name, so a
# user's own glob (``runs/*/run.parquet`` in a shell, Python's glob, pyarrow datasets) never takes them for data;
# DuckDB's globs, which the views use, do match it.
SCHEMA = ".schema"
LEGACY_SCHEMA = "_schema"  # the name before: its zero-row files are removed when a workdir is opened


@dataclass(frozen=True)
class Workdir:
    root: Path

    @classmethod
    def open(cls, root: str | Path) -> Workdir:
        """Resolve and initialise a workdir (idempotent)."""
        workdir = cls(Path(root).expanduser().resolve())
        workdir._init()
        return workdir

    @property
    def media_dir(self) -> Path:
        """Downloaded videos: a cache, safe to delete."""
        return self.root / "media"

    @property
    def store_dir(self) -> Path:
        """Content-addressed stage outputs, one folder per kind."""
        return self.root / "store"

    @property
    def cache_dir(self) -> Path:
        """Caches of this workdir (the text embeddings)."""
        return self.root / "cache"

    @property
    def text_cache_dir(self) -> Path:
        """Embeddings of every text encoded so far, by model and text (actalign.text_cache)."""
        return self.cache_dir / "text_embeddings"

    @property
    def figure_cache_dir(self) -> Path:
        """Report figures drawn so far, named by what they show (queries.report.figures): copied, not redrawn."""
        return self.cache_dir / "figures"

    @property
    def quarantine_dir(self) -> Path:
        """Damaged store files moved out of the views' globs (storage.integrity)."""
        return self.root / "quarantine"

    @property
    def db_path(self) -> Path:
        return self.root / "actalign.duckdb"

    def frames_path(self, key: str) -> Path:
        return self._inside(self.store_dir, "frame_embeddings", f"{key}.parquet")

    def pair_scores_path(self, frames_key: str) -> Path:
        return self._inside(self.store_dir, "pair_scores", f"{frames_key}.parquet")

    def script_path(self, key: str) -> Path:
        return self._inside(self.store_dir, "scripts", f"{key}.parquet")

    def step_embeddings_path(self, key: str) -> Path:
        return self._inside(self.store_dir, "step_embeddings", f"{key}.parquet")

    def run_dir(self, run_id: str) -> Path:
        return self._inside(self.root / "runs", run_id)

    def _inside(self, folder: Path, *parts: str) -> Path:
        """``folder/parts``, refused (InputError) when it resolves outside ``folder`` or the workdir: every store
        and run file is named here, so a planted symlink, or a run id like ``../x``, cannot move a write elsewhere."""
        path = folder.joinpath(*parts)
        contained(folder, path, self.root)
        return path

    def run_record_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "run.parquet"

    def videos_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "videos.parquet"

    def scores_path(self, run_id: str, shard: str) -> Path:
        return self.run_dir(run_id) / "scores" / f"{shard}.parquet"

    def status_path(self, run_id: str, stage: str, shard: str) -> Path:
        return self.run_dir(run_id) / "status" / f"{stage}-{shard}.parquet"

    def llm_requests_path(self, run_id: str, kind: str) -> Path:
        return self.run_dir(run_id) / "llm_requests" / f"{kind}.parquet"

    def plan_path(self, run_id: str | None) -> Path:
        """A run's plan (what it found fresh and stale before work); ``None``: the last `actalign status`."""
        return self.run_dir(run_id) / "plan.parquet" if run_id else self.root / "plans" / "status.parquet"

    def report_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "report.md"

    def sweep_dir(self, sweep_id: str) -> Path:
        """A sweep's arms, report and chosen configuration (storage.sweeps)."""
        return self._inside(self.root / "sweeps", sweep_id)

    def _placeholders(self, name: str) -> dict[Path, pa.Schema]:
        return {
            self.frames_path(name): schemas.FRAME_EMBEDDINGS,
            self.script_path(name): schemas.SCRIPTS,
            self.step_embeddings_path(name): schemas.STEP_EMBEDDINGS,
            self.run_record_path(name): schemas.RUNS,
            self.videos_path(name): schemas.VIDEOS,
            self.scores_path(name, name): schemas.SCORES,
            self.run_dir(name) / "status" / f"{name}.parquet": schemas.STATUS,
            self.llm_requests_path(name, name): schemas.LLM_REQUESTS,
            self.plan_path(name): schemas.PLANS,
            self.plan_path(None).with_name(f"{name}.parquet"): schemas.PLANS,
            self.sweep_dir(name) / "arms.parquet": schemas.SWEEP_ARMS,
        }

    def _init(self) -> None:
        for path, schema in self._placeholders(SCHEMA).items():
            if not _has_schema(path, schema):  # new columns reach old workdirs; a damaged placeholder is rewritten
                write_atomic(pa.Table.from_pylist([], schema=schema), path)
        self._remove_legacy_placeholders()

    def _remove_legacy_placeholders(self) -> None:
        """An older workdir's zero-row placeholders and their empty run folder; a file with rows is data, never touched."""
        legacy = [path for path in self._placeholders(LEGACY_SCHEMA) if path.is_file() and not path.is_symlink()]
        for path in legacy:
            if pq.read_metadata(path).num_rows == 0:
                path.unlink()
        run_folder = self.run_dir(LEGACY_SCHEMA)
        for folder in (*(run_folder / sub for sub in ("status", "scores", "llm_requests")), run_folder):
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()


def _has_schema(path: Path, schema: pa.Schema) -> bool:
    try:
        return pq.read_schema(path).equals(schema)
    except (OSError, pa.ArrowInvalid):
        return False
