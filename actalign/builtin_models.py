"""Models built on this machine rather than downloaded: where each lives, and how it is built.

Where a built model lives is known without torch, so its identity can be read
(``actalign.registry``) before anything is built or loaded; the builders import
torch and transformers only when called.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from actalign.toy_recipe import RECIPE


@dataclass(frozen=True)
class RandomTowerSize:
    """Width and depth of both towers of an untrained SigLIP; ``folder`` names its cache entry."""

    folder: str  # bump its suffix whenever the build in actalign.tiny_model changes
    hidden: int
    intermediate: int
    layers: int
    heads: int
    image_size: int
    patch_size: int


TINY = RandomTowerSize("tiny-random-v1", 32, 64, 2, 4, 32, 8)
# The shape of google/siglip-base-patch16-224 (about 200 M parameters): realistic speed, meaningless numbers.
BASE = RandomTowerSize("base-random-v1", 768, 3072, 12, 12, 224, 16)
# Of TINY's size, the other families (bump their suffix whenever their build changes).
TINY_CLIP_FOLDER = "tiny-clip-v1"
TINY_SIGLIP2_FOLDER = "tiny-siglip2-v1"


@dataclass(frozen=True)
class BuiltinModel:
    folder_name: Callable[[], str]  # its folder in the models cache
    build: Callable[[], Path]  # builds it the first time; returns the folder

    def folder(self) -> Path:
        return models_cache_dir() / self.folder_name()


def _random(size: RandomTowerSize) -> Path:
    from actalign.tiny_model import random_model_path

    return random_model_path(size)


def _tiny_clip() -> Path:
    from actalign.tiny_model import tiny_clip_path

    return tiny_clip_path()


def _tiny_siglip2() -> Path:
    from actalign.tiny_model import tiny_siglip2_path

    return tiny_siglip2_path()


def _toy() -> Path:
    from actalign.toy_model import toy_shapes_path

    return toy_shapes_path()


# By registry source ("builtin:<name>", see actalign.registry.REGISTRY).
BUILTIN: dict[str, BuiltinModel] = {
    "builtin:tiny-random": BuiltinModel(lambda: TINY.folder, lambda: _random(TINY)),
    "builtin:base-random": BuiltinModel(lambda: BASE.folder, lambda: _random(BASE)),
    "builtin:tiny-clip": BuiltinModel(lambda: TINY_CLIP_FOLDER, _tiny_clip),
    "builtin:tiny-siglip2": BuiltinModel(lambda: TINY_SIGLIP2_FOLDER, _tiny_siglip2),
    "builtin:toy-shapes": BuiltinModel(RECIPE.folder, _toy),
}

_BUILD_LOCK = threading.Lock()


def models_cache_dir() -> Path:
    """Where built models live: ``$ACTALIGN_CACHE/models`` or ``~/.cache/actalign/models``."""
    root = os.environ.get("ACTALIGN_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "actalign"
    return base / "models"


def built_model_path(name: str, marker: str, build: Callable[[Path], None]) -> Path:
    """The cache folder ``name``, built by ``build`` the first time; ``marker`` is the file that says it is complete.

    Built once however many threads and processes ask: they take turns on a lock
    file beside it (the toy model trains for minutes; two processes must not both
    train it), and the build goes to a private temporary sibling renamed into
    place, so a killed builder leaves no half-built folder.
    """
    final = models_cache_dir() / name
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _BUILD_LOCK, open(final.parent / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        if (final / marker).is_file():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=final.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            build(tmp)
            os.rename(tmp, final)
        except OSError:
            if not (final / marker).is_file():
                raise  # not a copy renamed into place by a builder that took no lock (an older actalign)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final
