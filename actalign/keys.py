"""Stage keys: content addresses for every stage output.

A key is a hash of the stage name, the stage's version, its own configuration
and the keys of its inputs (DESIGN.md, "Stage keys"). Bump a stage's version
when its logic changes so old outputs stop matching.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

KEY_HEX_CHARS = 24  # 96 bits: collisions are not a practical concern at any dataset size


def stage_key(stage: str, version: int, config: Mapping[str, Any], inputs: Sequence[str] = ()) -> str:
    """Hash a stage's identity; ``config`` must be JSON-serialisable (sorted, so order-free)."""
    payload = json.dumps(
        {"stage": stage, "version": version, "config": config, "inputs": list(inputs)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:KEY_HEX_CHARS]


def file_fingerprint(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hash a file's content, so a renamed or moved video keeps its key and an edited one does not."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()[:KEY_HEX_CHARS]
