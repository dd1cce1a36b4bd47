"""The one check every output file passes before it is written: it stays inside its folder.

File names come from ids (``actalign.ids.file_stem``) and run ids read back from
the store; a name that slipped through, or a symlink planted in the workdir,
must not let a write land anywhere else.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from actalign.errors import InputError


def contained(root: Path, path: Path, *more_roots: Path) -> Path:
    """``path`` resolved (symlinks followed); an InputError naming both when it resolves outside ``root``
    (or any of ``more_roots``).

    The target is resolved on every call; the roots' resolutions are remembered, which can only refuse more:
    a root turned into a symlink later moves its files' resolutions away from the remembered one."""
    target = Path(os.path.realpath(path))  # Path.resolve raises on a symlink loop
    for folder in (root, *more_roots):
        base = _resolved(str(folder))
        if not target.is_relative_to(base):
            raise InputError(f"refusing to write {path}: it resolves to {target}, outside {base}")
    return target


@lru_cache(maxsize=256)
def _resolved(folder: str) -> Path:
    return Path(os.path.realpath(folder))
