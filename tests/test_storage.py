"""Atomic writes and embedding round trips on real Parquet files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from actalign.storage.embeddings import read_frame_embeddings, write_frame_embeddings
from actalign.storage.parquet import write_atomic


def test_interrupted_writer_leaves_no_parquet(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    def crash(table, where):  # a writer killed half-way through its file
        open(where, "wb").write(b"PAR1 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(pa.table({"x": [1]}), tmp_path / "out.parquet")
    assert list(tmp_path.glob("*.parquet")) == [] and list(tmp_path.iterdir()) == []


def test_frame_embeddings_round_trip(tmp_path):
    embeddings = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    path = tmp_path / "f.parquet"
    write_frame_embeddings(path, video_id="v", times_s=np.arange(7) / 4, embeddings=embeddings, model="m", frames_key="k")
    assert np.array_equal(read_frame_embeddings(path), embeddings)
