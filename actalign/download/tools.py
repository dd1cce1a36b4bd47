"""The programs yt-dlp needs besides Python: ffmpeg for section downloads, deno for YouTube.

Each is looked up on PATH first, else taken from the Python package that ships
its binary (in the venv's bin, which is not on PATH when the CLI runs without
activating the venv). Without ffmpeg a segment is fetched as the whole file;
without deno YouTube offers fewer or no formats.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import shutil
from collections.abc import Callable, Iterator


def _program(name: str, packaged: Callable[[], str]) -> str | None:
    """``name`` on PATH, else the binary a Python package ships, else None."""
    found = shutil.which(name)
    if found is not None:
        return found
    try:
        return packaged()
    except Exception:  # not installed, or no binary for this platform
        return None


@functools.cache
def ffmpeg_executable() -> str | None:
    """The ffmpeg program for section downloads: ffmpeg on PATH, else imageio-ffmpeg's binary, else None."""
    return _program("ffmpeg", lambda: importlib.import_module("imageio_ffmpeg").get_ffmpeg_exe())


@functools.cache
def deno_executable() -> str | None:
    """The JavaScript runtime yt-dlp needs for YouTube (its 'n' and signature challenges, with yt-dlp-ejs).

    deno on PATH, else the binary of the ``deno`` package, else None: yt-dlp
    then warns and YouTube offers fewer or no formats. (yt-dlp also accepts
    Node.js, but only from version 22; the deno package installs with pip
    wherever the rest does.)
    """
    return _program("deno", lambda: importlib.import_module("deno").find_deno_bin())


@contextlib.contextmanager
def ffmpeg_location(path: str | None) -> Iterator[None]:
    """Make yt-dlp's FFmpegFD see our ffmpeg in this thread.

    FFmpegFD.available() ignores the ``ffmpeg_location`` parameter and reads a
    ContextVar that only yt-dlp's command line sets; a ContextVar set in one
    thread is invisible to the others, so set it around each download.
    """
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    var = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
    if path is None or var is None:
        yield
        return
    token = var.set(path)
    try:
        yield
    finally:
        var.reset(token)
