"""Text embeddings computed once: by (model, checkpoint fingerprint, precision, text).

Step texts repeat: across classes (ActionAtlas shares actions between
questions, LLM scripts reuse phrasings), across text kinds and across runs.
The text given is the final, augmented text (after the ``{step} in {domain}``
template), so a different augmentation is a different key.

Two levels:

* an in-process LRU (``max_items`` embeddings; 10 000 x 768 float32 = 30 MB),
  shared by every task of the process through ``text_cache()``;
* optionally a folder of Parquet files (``directory``): one file per call that
  encoded something, named by the hash of its texts, written to a temporary
  name and renamed (a half-written file never matches the glob), under
  ``<directory>/<namespace>/``. Other processes' files are picked up when a
  lookup misses. Safe to delete at any time.

A text's embedding does not depend on the batch it was encoded in (SigLIP text
is padded to a fixed length and unmasked), up to float rounding (~1e-6), so a
cached embedding equals a fresh one to float tolerance.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from actalign.models import Encoder

log = logging.getLogger(__name__)

DEFAULT_MAX_ITEMS = 10_000
FORMAT_VERSION = 1  # bump when the file layout or the key changes


def namespace(encoder: Encoder) -> str:
    """The part of the key that is not the text: model id, checkpoint fingerprint, precision."""
    model = hashlib.sha256(encoder.identity.model_id.encode()).hexdigest()[:12]
    return f"v{FORMAT_VERSION}-{model}-{encoder.identity.fingerprint}-{encoder.identity.dtype_name}"


class TextEmbeddingCache:
    """``embed(encoder, texts)``: like ``encoder.embed_texts``, but each distinct text is encoded once."""

    def __init__(self, directory: Path | None = None, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.directory = None if directory is None else Path(directory)
        self.max_items = max_items
        self._lru: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._files_read: set[Path] = set()
        self._lock = threading.Lock()
        self.hits = 0  # texts answered from memory or disk
        self.encoded = 0  # texts this cache had the encoder encode

    def embed(self, encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
        """float32 (N, embed_dim) in the order of ``texts``."""
        return self.lookup_or_encode(encoder, texts)[0]

    def lookup_or_encode(self, encoder: Encoder, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """(embeddings in the order of ``texts``, how many distinct texts this call encoded)."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("the text cache wants a sequence of strings (a bare string would be split into characters)")
        texts = list(texts)
        space = namespace(encoder)
        found = self._get_many(space, texts)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing and self.directory is not None:
            self._read_disk(space)
            found.update(self._get_many(space, missing))
            missing = [t for t in missing if t not in found]
        if missing:
            fresh = encoder.embed_texts(missing)
            for text, row in zip(missing, fresh):
                found[text] = row
            self._put_many(space, dict(zip(missing, fresh)))
            if self.directory is not None:
                self._write_disk(space, missing, fresh)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.encoded += len(missing)
        if not texts:
            return np.zeros((0, encoder.embed_dim), np.float32), 0
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False), len(missing)

    def __len__(self) -> int:
        return len(self._lru)

    def clear(self) -> None:
        """Forget the in-memory entries (the files stay)."""
        with self._lock:
            self._lru.clear()
            self._files_read.clear()

    # --- memory -------------------------------------------------------------------

    def _get_many(self, space: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        with self._lock:
            for text in texts:
                row = self._lru.get((space, text))
                if row is not None:
                    self._lru.move_to_end((space, text))
                    found[text] = row
        return found

    def _put_many(self, space: str, rows: dict[str, np.ndarray]) -> None:
        with self._lock:
            for text, row in rows.items():
                row = np.array(row, dtype=np.float32)  # a private copy: callers may write into what they got
                row.setflags(write=False)
                self._lru[(space, text)] = row
                self._lru.move_to_end((space, text))
            while len(self._lru) > self.max_items:
                self._lru.popitem(last=False)

    # --- disk ---------------------------------------------------------------------

    def _folder(self, space: str) -> Path:
        assert self.directory is not None
        return self.directory / space

    def _read_disk(self, space: str) -> None:
        folder = self._folder(space)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.parquet")):
            with self._lock:
                if path in self._files_read:
                    continue
                self._files_read.add(path)
            try:
                table = pq.read_table(path)
                texts = table.column("text").to_pylist()
                flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
                rows = flat.astype(np.float32, copy=False).reshape(len(texts), -1) if texts else flat.reshape(0, 0)
            except (OSError, pa.ArrowException, KeyError, ValueError) as exc:  # a damaged file is only a missed cache hit
                log.warning("text cache: ignoring unreadable %s: %s", path, exc)
                continue
            self._put_many(space, dict(zip(texts, rows)))

    def _write_disk(self, space: str, texts: list[str], embeddings: np.ndarray) -> None:
        folder = self._folder(space)
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:24]
        final = folder / f"{digest}.parquet"
        rows, dim = embeddings.shape
        table = pa.table(
            {
                "text": pa.array(texts, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1)), dim
                ),
            }
        )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{digest}.{uuid.uuid4().hex}.tmp"
            pq.write_table(table, temporary)
            os.replace(temporary, final)
        except OSError as exc:  # the cache is an optimisation: never fail the caller over it
            log.warning("text cache: cannot write %s: %s", final, exc)
            return
        with self._lock:
            self._files_read.add(final)


_CACHES: dict[Path | None, TextEmbeddingCache] = {}
_CACHES_LOCK = threading.Lock()


def text_cache(directory: Path | str | None = None) -> TextEmbeddingCache:
    """The process-wide cache for ``directory`` (None: memory only); every task of the process shares it."""
    key = None if directory is None else Path(directory).expanduser().resolve()
    with _CACHES_LOCK:
        if key not in _CACHES:
            _CACHES[key] = TextEmbeddingCache(key)
        return _CACHES[key]


def embed_texts_cached(encoder: Encoder, texts: Sequence[str], directory: Path | str | None = None) -> tuple[np.ndarray, int]:
    """``encoder.embed_texts(texts)`` through the shared cache: (embeddings, number of texts actually encoded)."""
    return text_cache(directory).lookup_or_encode(encoder, texts)


def clear_text_caches() -> None:
    """Forget every process-wide cache (tests)."""
    with _CACHES_LOCK:
        _CACHES.clear()
