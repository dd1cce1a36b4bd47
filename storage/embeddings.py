"""Embedding tables: NumPy in, Parquet out, and back, without per-row Python loops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyarrow as pa

from actalign.storage import schemas
from actalign.storage.file_memo import FileMemo
from actalign.storage.parquet import read, write_atomic

PairScores = Mapping[str, tuple[float, int | None]]

# The acquire stage writes a video's frames and the score stage, in the same process, reads them back:
# remembered at the write, they are not parsed again. Big enough for the shards in flight of a run.
_FRAMES: FileMemo[np.ndarray] = FileMemo(256 * 2**20, lambda array: array.nbytes)
# The text stage writes each class's embedded texts and every score shard of the run reads them.
_TEXTS: FileMemo[Mapping[str, np.ndarray]] = FileMemo(64 * 2**20, lambda kinds: sum(rows.nbytes for rows in kinds.values()))
# A run's plan reads every video's pair-score cache and its score stage reads them again.
_PAIR_SCORES: FileMemo[PairScores] = FileMemo(64 * 2**20, lambda pairs: 256 * len(pairs))  # about a pair's bytes in a dict


def to_list_array(embeddings: np.ndarray) -> pa.Array:
    """(N, d) float array -> a list<float32> column of N rows."""
    rows, dim = embeddings.shape
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1))
    return pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * dim), flat)


def to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A list<float32> column of equal-length rows -> (N, d) float32."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    values = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(array), -1)


def write_frame_embeddings(
    path: Path,
    *,
    video_id: str,
    times_s: np.ndarray,
    embeddings: np.ndarray,
    model: str,
    frames_key: str,
    fps: float,
    start_s: float | None = None,
    end_s: float | None = None,
) -> None:
    """One video's frames with the sampling that made them, so frames of two samplings are told apart in SQL."""
    embeddings = np.array(embeddings, dtype=np.float32, order="C")  # a copy: remembered below, as read back
    embeddings.flags.writeable = False
    n = len(times_s)
    table = pa.table(
        {
            "video_id": pa.array([video_id] * n, pa.string()),
            "frame_idx": pa.array(np.arange(n, dtype=np.int32)),
            "t_s": pa.array(np.asarray(times_s, dtype=np.float64)),
            "embedding": to_list_array(embeddings),
            "model": pa.array([model] * n, pa.string()),
            "frames_key": pa.array([frames_key] * n, pa.string()),
            "fps": pa.array([fps] * n, pa.float64()),
            "start_s": pa.array([start_s] * n, pa.float64()),
            "end_s": pa.array([end_s] * n, pa.float64()),
        },
        schema=schemas.FRAME_EMBEDDINGS,
    )
    write_atomic(table, path)
    _FRAMES.remember(path, embeddings)


def read_frame_embeddings(path: Path) -> np.ndarray:
    """(T, d) float32 frame embeddings in frame order, read-only: as this process wrote or last read them
    while the file is unchanged (``storage.file_memo``), else parsed."""
    return _FRAMES.read(path, _parse_frame_embeddings)


def _parse_frame_embeddings(path: Path) -> np.ndarray:
    """Only the two columns that give the order and the values are read (a quarter of the time)."""
    table = read(path, columns=["frame_idx", "embedding"])
    order = table.column("frame_idx").to_numpy()
    if (order[1:] < order[:-1]).any():  # written in order; a file from elsewhere may not be
        table = table.sort_by("frame_idx")
    embeddings = to_numpy(table.column("embedding"))
    embeddings.flags.writeable = False
    return embeddings


def write_text_embeddings(
    path: Path,
    *,
    class_id: str,
    texts: Sequence[tuple[str, int, str]],
    embeddings: np.ndarray,
    model: str,
    embed_key: str,
) -> None:
    """``texts``: (kind, index, text) per row of ``embeddings``; kinds as in schemas.STEP_EMBEDDINGS."""
    count = len(texts)
    table = pa.table(
        {
            "class_id": pa.array([class_id] * count, pa.string()),
            "kind": pa.array([kind for kind, _, _ in texts], pa.string()),
            "step_idx": pa.array([index for _, index, _ in texts], pa.int32()),
            "text": pa.array([text for _, _, text in texts], pa.string()),
            "embedding": to_list_array(embeddings),
            "model": pa.array([model] * count, pa.string()),
            "embed_key": pa.array([embed_key] * count, pa.string()),
        },
        schema=schemas.STEP_EMBEDDINGS,
    )
    write_atomic(table, path)
    _TEXTS.remember(path, _by_kind(table))


def read_text_embeddings(path: Path) -> Mapping[str, np.ndarray]:
    """Embeddings by kind ('step', 'name', 'attribute', 'subtext'), each (n x d) in index order, read-only
    (``storage.file_memo``: a class's texts are parsed once per process, not once per score shard)."""
    return _TEXTS.read(path, lambda path: _by_kind(read(path, columns=["kind", "step_idx", "embedding"])))


def _by_kind(table: pa.Table) -> Mapping[str, np.ndarray]:
    table = table.sort_by("step_idx")
    embeddings = to_numpy(table.column("embedding"))
    kinds = np.array(table.column("kind").to_pylist())
    by_kind = {kind: embeddings[kinds == kind] for kind in dict.fromkeys(kinds.tolist())}
    for rows in by_kind.values():
        rows.flags.writeable = False
    return MappingProxyType(by_kind)


def read_frame_times(path: Path) -> list[float]:
    """Segment-relative times (s) of the stored frames, in frame order."""
    return read(path).sort_by("frame_idx").column("t_s").to_pylist()


def read_step_texts(path: Path) -> list[str]:
    """The encoded step texts (after context augmentation), in step order."""
    table = read(path).sort_by("step_idx")
    return [text for text, kind in zip(table.column("text").to_pylist(), table.column("kind").to_pylist()) if kind == "step"]


def read_script_steps(path: Path) -> list[str]:
    """A stored script's steps, in order."""
    return read(path).sort_by("step_idx").column("text").to_pylist()


def read_pair_scores(path: Path) -> PairScores:
    """The score cache of one video: pair key -> (score, path length), read-only.

    Remembered while the file is unchanged (``storage.file_memo``)."""
    return _PAIR_SCORES.read(path, _parse_pair_scores)


def _parse_pair_scores(path: Path) -> PairScores:
    table = read(path).to_pydict()
    return MappingProxyType(dict(zip(table["pair_key"], zip(table["score"], table["path_len"]))))


def write_pair_scores(path: Path, scores: Mapping[str, tuple[float, int | None]]) -> None:
    """Write one video's score cache and remember it as read back: the next plan in this process (a sweep's
    next arm, a re-run) reads no file."""
    stored = {key: (float(score), None if path_len is None else int(path_len)) for key, (score, path_len) in scores.items()}
    rows = [{"pair_key": key, "score": score, "path_len": path_len} for key, (score, path_len) in stored.items()]
    write_atomic(pa.Table.from_pylist(rows, schema=schemas.PAIR_SCORES), path)
    _PAIR_SCORES.remember(path, MappingProxyType(stored))
