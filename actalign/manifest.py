"""Video manifests: which videos to classify, their segments, candidates and labels.

A manifest is CSV, TSV (tab-separated), JSONL or Parquet with the columns

    video_id   (optional: the file's stem)
    path, url or youtube_id (one is required: a regular file, relative to the manifest's folder;
               an http(s) or file:// URL; an 11-character YouTube id; URLs and ids are downloaded)
    start_s, end_s (optional segment, seconds)   domain (optional)
    candidates (optional; default all classes: a list in JSONL/Parquet, "a|b|c" or a JSON list in CSV)
    label (optional true class)

A plain folder of videos is a manifest with one row per video file and no labels.
Candidates and labels name classes by id or by action name; they are joined by
id, never by position. Every problem names the manifest and the row.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pyarrow.parquet as pq

from actalign.classes import ClassSpec, resolve_class
from actalign.download import YOUTUBE_ID, is_remote
from actalign.errors import InputError
from actalign.ids import check_id
from actalign.suggest import closest

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts"})
MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
SOURCE_COLUMNS = ("path", "url", "youtube_id")
COLUMNS = ("video_id", *SOURCE_COLUMNS, "start_s", "end_s", "domain", "candidates", "label")


@dataclass(frozen=True)
class VideoSpec:
    """One video to classify, with everything resolved to class ids; ``source`` is an absolute
    path, or a URL / YouTube id to download."""

    video_id: str
    source: str
    start_s: float | None
    end_s: float | None
    domain: str | None
    candidates: tuple[str, ...]
    label: str | None
    obfuscation: dict[int, list] | None = None  # ActionAtlas: polygons per 1-based segment frame number


def load_manifest(source: str | Path, classes: list[ClassSpec]) -> list[VideoSpec]:
    """Read a manifest file or a folder of videos and validate it against the classes."""
    source = Path(source)
    if source.is_dir():
        rows, base = _folder_rows(source), source
    elif source.is_file():
        rows, base = read_rows(source), source.parent
    else:
        raise InputError(f"videos not found: {source} is neither a folder of videos nor a manifest file")
    if not rows:
        raise InputError(f"manifest {source} lists no videos; add rows (or video files to the folder)")
    _check_columns(rows, source)
    by_id = {spec.class_id: spec for spec in classes}
    videos: list[VideoSpec] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        video = _parse_row(row, base, by_id, f"manifest {source}, row {number}")
        if video.video_id in seen:
            raise InputError(f"manifest {source}, row {number}: duplicate video_id {video.video_id!r}")
        seen.add(video.video_id)
        videos.append(video)
    return videos


def _check_columns(rows: list[dict[str, Any]], source: Path) -> None:
    """A misspelt column would be silently ignored (``file`` read as no path, ``lable`` as no label): refuse it."""
    unknown = sorted({str(column) for row in rows for column in row if column is not None} - set(COLUMNS))  # None: a CSV row longer than its header
    if unknown:
        hints = "".join(closest([name], COLUMNS) for name in unknown)
        raise InputError(
            f"manifest {source}: unrecognised column(s) {', '.join(map(repr, unknown))}{hints}; "
            f"the accepted columns are {', '.join(COLUMNS)} (one of {', '.join(SOURCE_COLUMNS)} is required)"
        )


def _folder_rows(folder: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    return [{"video_id": p.stem, "path": p.name} for p in files]


def read_rows(path: Path, what: str = "manifest") -> list[dict[str, Any]]:
    """Rows of a CSV, TSV, JSONL, JSON (a list of objects) or Parquet file; every failure an InputError naming it."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a BOM would hide the first column's name
                return list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            return [_json_object(line, f"{what} {path}, line {n}") for n, line in enumerate(lines, start=1) if line.strip()]
        if suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8-sig"))
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InputError(f"{what} {path}: expected a list of JSON objects")
            return rows
        if suffix == ".parquet":
            return pq.read_table(path).to_pylist()
    except InputError:
        raise
    except Exception as exc:  # OSError, UnicodeDecodeError, csv.Error, JSONDecodeError, pyarrow's own errors
        raise InputError(f"cannot read {what} {path}: {exc}") from exc
    raise InputError(f"{what} {path}: unsupported type {suffix!r}; use one of {', '.join(MANIFEST_EXTENSIONS)}")


def _json_object(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object per line")
    return row


def _parse_row(row: dict[str, Any], base: Path, classes: dict[str, ClassSpec], where: str) -> VideoSpec:
    column, raw = next(((column, _text(row.get(column))) for column in SOURCE_COLUMNS if _text(row.get(column))), (None, None))
    if not raw:
        raise InputError(f"{where}: missing the video: give 'path' (a file, relative to the manifest's folder), 'url' or 'youtube_id'")
    source = _source(column, raw, base, where)
    video_id = check_id(_text(row.get("video_id")) or Path(raw.split("?")[0].rstrip("/")).stem or raw, "video_id", where)
    start_s, end_s = _seconds(row.get("start_s"), "start_s", where), _seconds(row.get("end_s"), "end_s", where)
    if start_s is not None and start_s < 0:
        raise InputError(f"{where}: start_s is negative ({start_s})")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise InputError(f"{where}: end_s ({end_s}) must be after start_s ({start_s})")
    candidates = tuple(_resolve_all(_names(row.get("candidates"), where), classes, where, "candidate")) or tuple(classes)
    label_name = _text(row.get("label"))
    label = _resolve_all([label_name], classes, where, "label")[0] if label_name else None
    if label is not None and label not in candidates:
        raise InputError(f"{where}: label {label!r} is not among the row's candidates {list(candidates)}")
    return VideoSpec(
        video_id=video_id,
        source=source,
        start_s=start_s,
        end_s=end_s,
        domain=_text(row.get("domain")),
        candidates=candidates,
        label=label,
    )


def _source(column: str, raw: str, base: Path, where: str) -> str:
    """A URL or YouTube id to download, or the absolute path of a regular file; checked here, before anything reads it."""
    if "\0" in raw:
        raise InputError(f"{where}: the {column} {raw!r} contains a NUL character; remove it")
    if column == "youtube_id" and not YOUTUBE_ID.fullmatch(raw):
        raise InputError(f"{where}: youtube_id {raw!r} is not a YouTube id (11 characters of A-Z a-z 0-9 _ -); give links as 'url', files as 'path'")
    if column == "url" and not re.match(r"(https?|file)://", raw, re.IGNORECASE):
        raise InputError(f"{where}: url {raw!r} is not an http://, https:// or file:// URL; give files as 'path'")
    if is_remote(raw):
        return raw
    try:
        path = _local(raw, base)
        mode = path.stat().st_mode
    except ValueError as exc:  # a NUL written as %00 in a file:// URL
        raise InputError(f"{where}: the {column} {raw!r} names no usable path ({exc}); fix it") from exc
    except OSError:  # missing or unreadable: that video alone fails later, as VideoNotFoundError
        return str(path)
    if not stat.S_ISREG(mode):  # hashing a FIFO or /dev/zero never ends
        raise InputError(f"{where}: {path} is not a regular file (a folder, FIFO or device); give a video file as '{column}'")
    return str(path)


def _local(raw: str, base: Path) -> Path:
    """A file path or file:// URL, relative ones against the manifest's folder."""
    path = Path(url2pathname(urlsplit(raw).path)) if raw.lower().startswith("file://") else Path(raw)
    return Path(os.path.realpath(path if path.is_absolute() else base / path))  # Path.resolve raises on a symlink loop


def _resolve_all(names: Iterable[str], classes: dict[str, ClassSpec], where: str, what: str) -> list[str]:
    resolved = []
    for name in names:
        class_id = resolve_class(name, classes)
        if class_id is None:
            hint = closest([name], classes)
            raise InputError(f"{where}: unknown {what} class {name!r}{hint}; it is not in the classes file (known: {', '.join(classes)})")
        if class_id not in resolved:
            resolved.append(class_id)
    return resolved


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _seconds(value: Any, column: str, where: str) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError as exc:
        raise InputError(f"{where}: {column} must be a number of seconds, got {text!r}") from exc
    if not math.isfinite(seconds):
        raise InputError(f"{where}: {column} must be finite, got {text!r}")
    return seconds


def _names(value: Any, where: str) -> list[str]:
    """Candidates as a list: a real list, a JSON list in a string, or "a|b|c"."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    text = _text(value)
    if text is None:
        return []
    if text.startswith("["):
        try:
            return _names(json.loads(text), where)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: candidates look like JSON but do not parse ({exc})") from exc
    return [part.strip() for part in text.split("|") if part.strip()]
