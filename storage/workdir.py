"""Paths of the workdir, in one place (see the layout in ``storage/__init__``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actalign.storage import schemas
from actalign.storage.parquet import write_atomic
from actalign.storage.safe_paths import contained

# Zero-row files (and a run folder of them) named so, so the views answer on an empty workdir.
SCHEMA = "_schema"


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
        contained(folder, path)
        contained(self.root, path)
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

    def _init(self) -> None:
        placeholders = {
            self.frames_path(SCHEMA): schemas.FRAME_EMBEDDINGS,
            self.script_path(SCHEMA): schemas.SCRIPTS,
            self.step_embeddings_path(SCHEMA): schemas.STEP_EMBEDDINGS,
            self.run_record_path(SCHEMA): schemas.RUNS,
            self.videos_path(SCHEMA): schemas.VIDEOS,
            self.scores_path(SCHEMA, SCHEMA): schemas.SCORES,
            self.run_dir(SCHEMA) / "status" / f"{SCHEMA}.parquet": schemas.STATUS,
            self.llm_requests_path(SCHEMA, SCHEMA): schemas.LLM_REQUESTS,
            self.plan_path(SCHEMA): schemas.PLANS,
            self.plan_path(None).with_name(f"{SCHEMA}.parquet"): schemas.PLANS,
        }
        for path, schema in placeholders.items():
            if not path.exists() or not pq.read_schema(path).equals(schema):  # new columns reach old workdirs
                write_atomic(pa.Table.from_pylist([], schema=schema), path)
