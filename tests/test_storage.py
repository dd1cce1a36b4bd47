"""Atomic writes and embedding round trips on real Parquet files."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from actalign.storage.embeddings import read_frame_embeddings, read_pair_scores, write_frame_embeddings, write_pair_scores
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
    write_frame_embeddings(path, video_id="v", times_s=np.arange(7) / 4, embeddings=embeddings, model="m", frames_key="k", fps=4.0)
    assert np.array_equal(read_frame_embeddings(path), embeddings)


def test_frame_embeddings_come_back_in_frame_order_from_a_file_written_out_of_order(tmp_path):
    import pyarrow.parquet as pq

    embeddings = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    path = tmp_path / "f.parquet"
    write_frame_embeddings(path, video_id="v", times_s=np.arange(5) / 4, embeddings=embeddings, model="m", frames_key="k", fps=4.0)
    table = pq.read_table(path)
    pq.write_table(table.take([3, 0, 4, 1, 2]), path)  # e.g. a file rewritten by another tool
    assert np.array_equal(read_frame_embeddings(path), embeddings)


def test_a_pair_score_cache_is_parsed_at_most_once_until_another_writer_replaces_it(tmp_path, monkeypatch):
    """What this process wrote is read back without a parse (the next plan of a sweep or a re-run), as the
    file holds it; a file another writer replaced is parsed once; the mapping handed out is read-only."""
    import pyarrow.parquet as pq

    opened = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    path = tmp_path / "pairs.parquet"
    write_pair_scores(path, {"a": (np.float64(0.5), np.int64(12)), "b": (0.25, None)})
    assert read_pair_scores(path) == {"a": (0.5, 12), "b": (0.25, None)} and not opened
    assert all(type(score) is float for score, _ in read_pair_scores(path).values())  # as a parse gives them
    write_atomic(pa.table({"pair_key": ["c"], "score": [0.75], "path_len": pa.array([3], pa.int32())}), path)  # another writer
    assert read_pair_scores(path) == {"c": (0.75, 3)} and read_pair_scores(path) == {"c": (0.75, 3)} and len(opened) == 1
    with pytest.raises(TypeError):
        read_pair_scores(path)["d"] = (1.0, 1)


def test_frames_written_by_this_process_are_read_back_without_parsing_until_the_file_changes(tmp_path, monkeypatch):
    """The score stage reads what the acquire stage just wrote: no Parquet parse, the same values, read-only,
    unaffected by the writer reusing its array; a file replaced since (another run, another tool) is parsed."""
    import pyarrow.parquet as pq

    from actalign.storage.parquet import write_atomic

    opened = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    embeddings = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    path = tmp_path / "f.parquet"
    write_frame_embeddings(path, video_id="v", times_s=np.arange(6) / 4, embeddings=embeddings, model="m", frames_key="k", fps=4.0)
    written = embeddings.copy()
    embeddings[:] = 0.0  # the encoder's buffer, refilled
    first = read_frame_embeddings(path)
    assert np.array_equal(first, written) and opened == [] and not first.flags.writeable
    write_atomic(pq.read_table(path).slice(0, 3), path)  # replaced: a new file with three frames
    assert np.array_equal(read_frame_embeddings(path), written[:3]) and opened == [path]


def test_texts_written_by_this_process_are_read_back_by_kind_without_parsing(tmp_path, monkeypatch):
    """Every score shard of a run reads each class's texts: parsed at most once per process, and as a parse gives them."""
    import pyarrow.parquet as pq

    from actalign.storage.embeddings import read_text_embeddings, write_text_embeddings

    opened = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    rows = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    texts = [("step", 1, "b"), ("name", 0, "spin"), ("step", 0, "a"), ("step", 2, "c")]  # out of order, as no writer does
    path = tmp_path / "t.parquet"
    write_text_embeddings(path, class_id="spin", texts=texts, embeddings=rows, model="m", embed_key="k")
    remembered = read_text_embeddings(path)
    assert opened == [] and list(remembered) == ["name", "step"]
    assert np.array_equal(remembered["step"], rows[[2, 0, 3]]) and np.array_equal(remembered["name"], rows[[1]])
    with pytest.raises(ValueError):
        remembered["step"][0, 0] = 1.0
    written = path.stat().st_mtime_ns
    os.utime(path, ns=(written, written + 10**9))  # another identity (as a copy by another tool): parsed, with the same result
    assert {kind: rows.tolist() for kind, rows in read_text_embeddings(path).items()} == {kind: rows.tolist() for kind, rows in remembered.items()}
    assert opened == [path]


def test_a_file_memo_keeps_the_most_recently_used_values_within_its_bytes(tmp_path):
    from actalign.storage.file_memo import FileMemo

    parsed = []
    memo: FileMemo[bytes] = FileMemo(10, len)
    paths = [tmp_path / name for name in "abc"]
    for path in paths:
        path.write_bytes(b"1234")

    def parse(path):
        parsed.append(path.name)
        return path.read_bytes()

    for path in paths[:2]:
        memo.read(path, parse)
    memo.read(paths[0], parse)  # a is now the most recently used
    memo.read(paths[2], parse)  # 12 bytes: b, the least recently used, goes
    memo.read(paths[0], parse)
    memo.read(paths[1], parse)
    memo.remember(tmp_path / "c", b"x" * 11)  # larger than the whole memo: forgotten, and c's old value with it
    memo.read(paths[2], parse)
    assert parsed == ["a", "b", "c", "b", "c"]


def test_placeholders_are_hidden_from_a_users_glob_and_old_ones_are_removed(tmp_path):
    """The zero-row files that let the views answer on a new workdir are not what ``runs/*/run.parquet`` finds
    in a shell or Python; an older workdir's ``_schema`` placeholders go, a ``_schema`` file with rows stays."""
    import glob

    import pyarrow.parquet as pq

    from actalign.queries.runner import run_sql
    from actalign.storage.workdir import Workdir

    old = tmp_path / "work"
    (old / "runs" / "_schema" / "status").mkdir(parents=True)
    pq.write_table(pa.table({"run_id": pa.array([], pa.string())}), old / "runs" / "_schema" / "run.parquet")
    pq.write_table(pa.table({"run_id": pa.array([], pa.string())}), old / "runs" / "_schema" / "status" / "_schema.parquet")
    (old / "store" / "scripts").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), old / "store" / "scripts" / "_schema.parquet")  # rows: someone's data

    workdir = Workdir.open(old)
    assert glob.glob(str(old / "runs" / "*" / "run.parquet")) == []
    assert not (old / "runs" / "_schema").exists()
    assert (old / "store" / "scripts" / "_schema.parquet").exists()
    assert run_sql(workdir, "SELECT count(*) AS n FROM runs").rows == [(0,)]
    (old / "runs" / ".schema" / "run.parquet").write_bytes(b"PAR1 torn")  # a damaged placeholder is written again
    assert run_sql(Workdir.open(old), "SELECT count(*) AS n FROM runs").rows == [(0,)]
