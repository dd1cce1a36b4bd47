"""The one check every output file passes before it is written: it stays inside its folder.

File names come from ids (``actalign.ids.file_stem``) and run ids read back from
the store; a name that slipped through, or a symlink planted in the workdir,
must not let a write land anywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

from actalign.errors import InputError


def contained(root: Path, path: Path) -> Path:
    """``path`` resolved (symlinks followed); an InputError naming both when it resolves outside ``root``."""
    base, target = Path(os.path.realpath(root)), Path(os.path.realpath(path))  # Path.resolve raises on a symlink loop
    if not target.is_relative_to(base):
        raise InputError(f"refusing to write {path}: it resolves to {target}, outside {base}")
    return target
