"""Embedding tables: NumPy in, Parquet out, and back, without per-row Python loops."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage import schemas
from storage.parquet import read, write_atomic


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
    path: Path, *, video_id: str, times_s: np.ndarray, embeddings: np.ndarray, model: str, frames_key: str
) -> None:
    n = len(times_s)
    table = pa.table(
        {
            "video_id": pa.array([video_id] * n, pa.string()),
            "frame_idx": pa.array(np.arange(n, dtype=np.int32)),
            "t_s": pa.array(np.asarray(times_s, dtype=np.float64)),
            "embedding": to_list_array(embeddings),
            "model": pa.array([model] * n, pa.string()),
            "frames_key": pa.array([frames_key] * n, pa.string()),
        },
        schema=schemas.FRAME_EMBEDDINGS,
    )
    write_atomic(table, path)


def read_frame_embeddings(path: Path) -> np.ndarray:
    """(T, d) frame embeddings in frame order."""
    table = read(path).sort_by("frame_idx")
    return to_numpy(table.column("embedding"))


def write_text_embeddings(
    path: Path,
    *,
    class_id: str,
    steps: Sequence[str],
    name: str,
    embeddings: np.ndarray,
    model: str,
    embed_key: str,
) -> None:
    """Steps first (step_idx 0..K-1, kind 'step'), then the class-name text (step_idx -1, kind 'name')."""
    count = len(steps) + 1
    table = pa.table(
        {
            "class_id": pa.array([class_id] * count, pa.string()),
            "kind": pa.array(["step"] * len(steps) + ["name"], pa.string()),
            "step_idx": pa.array(list(range(len(steps))) + [-1], pa.int32()),
            "text": pa.array([*steps, name], pa.string()),
            "embedding": to_list_array(embeddings),
            "model": pa.array([model] * count, pa.string()),
            "embed_key": pa.array([embed_key] * count, pa.string()),
        },
        schema=schemas.STEP_EMBEDDINGS,
    )
    write_atomic(table, path)


def read_text_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps K x d in step order, class-name d) from a step-embedding file."""
    table = read(path).sort_by("step_idx")
    embeddings = to_numpy(table.column("embedding"))
    kinds = table.column("kind").to_pylist()
    return embeddings[[k == "step" for k in kinds]], embeddings[kinds.index("name")]


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
