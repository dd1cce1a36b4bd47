"""The ActionAtlas v1.0 benchmark manifest (Hugging Face dataset ``mrsalehi/ActionAtlas-v1.0``, split ``test``).

934 rows, one per multiple-choice question about a short YouTube segment of a
sports move. Fields used here:

=====================  =============================================================
``id``                 question id (kept as a string)
``youtube_id``         the YouTube video (11 characters)
``start_timestamp``,   the segment in seconds (numbers or strings); like the official
``end_timestamp``      scripts we round them to 0.1 s: the official segment files are
                       cut from ``round(start, 1)`` to ``round(end, 1)``, and the
                       obfuscation frame numbers count from that start
``domain``             the sport
``action``             the correct action's name
``question``           the question text (optional)
``choices_str``        numbered lines ``"1. Axe kick\\n2. Roundhouse kick"``
``answer``             1-based number of the correct choice (int, or a string like "2")
``choice_descriptions``  one description per choice (optional)
``frames_to_blur``     text regions to obfuscate (``frames_to_obfuscate`` accepted too)
=====================  =============================================================

``frames_to_blur`` as the official ``obfuscate_text.py`` writes it: a mapping
from the 1-based frame number within the extracted segment (a string key) to
the detected texts of that frame, each ``{"description": ..., "bounding_poly":
{"vertices": [[x, y], ...]}}`` in the segment's pixel coordinates. Accepted
here as well: a JSON string of it, a Parquet struct with one (often null) field
per frame, vertices as ``{"x": .., "y": ..}``, plain polygons ``[[x, y], ...]``
instead of text entries, and lists (``[{"frame": n, "polygons": [...]}, ...]``,
``[[n, polygons], ...]``, or one entry per frame starting at frame 1).

Classes: each distinct (domain, action) pair of the choices is one class
(``class_id_for``), shared by every question that offers it. Candidates and
labels are joined by (question id, candidate index), never by list position
across questions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actalign.classes import ClassSpec, slugify
from actalign.errors import InputError
from actalign.ids import check_id
from actalign.manifest import VideoSpec, read_rows

log = logging.getLogger(__name__)

HF_DATASET = "mrsalehi/ActionAtlas-v1.0"
HF_REVISION = "refs/convert/parquet"  # the hub's own Parquet export: a stable file name for the test split
HF_FILENAME = "default/test/0000.parquet"

REQUIRED_COLUMNS = (
    "id",
    "youtube_id",
    "start_timestamp",
    "end_timestamp",
    "domain",
    "action",
    "choices_str",
    "answer",
)
OBFUSCATION_COLUMNS = ("frames_to_blur", "frames_to_obfuscate")
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")

Obfuscation = dict[int, list[list[tuple[float, float]]]]


@dataclass(frozen=True)
class Question:
    question_id: str
    youtube_id: str
    start_s: float  # round(start_timestamp, 1), as the official segments
    end_s: float  # round(end_timestamp, 1)
    domain: str
    action: str
    choices: tuple[str, ...]  # in the question's own order (index 0 = choice "1.")
    answer_index: int  # 0-based index into choices
    obfuscation: Obfuscation = field(default_factory=dict, hash=False, compare=False)  # 1-based segment frame -> polygons
    question: str = ""
    choice_descriptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuestionClasses:
    """Questions turned into classes, with every join keyed by ids.

    ``candidates[(question_id, k)]`` is the class id of choice ``k`` (0-based)
    of that question; ``labels[question_id]`` the class id of its answer.
    """

    classes: list[ClassSpec]
    candidates: dict[tuple[str, int], str]
    labels: dict[str, str]
    choice_counts: dict[str, int]

    def candidate_ids(self, question_id: str) -> tuple[str, ...]:
        """The question's candidate class ids in choice order, looked up by (id, index)."""
        return tuple(self.candidates[(question_id, k)] for k in range(self.choice_counts[question_id]))


# --- choices ------------------------------------------------------------------------

_CHOICE_LINE = re.compile(r"^\s*(\d+)\s*[.):\-]\s*(.*?)\s*$")


def parse_choices(choices_str: str) -> tuple[str, ...]:
    """Numbered lines -> choices ordered by their number.

    Accepts "1. A", "1) A", "1: A", "1 - A", blank lines, Windows or old Mac
    newlines, and numbers out of order. Raises InputError for a line without a
    number, an empty choice, a repeated number or choice, or numbers that are
    not exactly 1..n.
    """
    if not isinstance(choices_str, str) or not choices_str.strip():
        raise InputError("no choices: choices_str is empty")
    numbered: dict[int, str] = {}
    for line in re.split(r"\r\n|\r|\n", choices_str):
        if not line.strip():
            continue
        match = _CHOICE_LINE.match(line)
        if not match:
            raise InputError(f"choice line {line.strip()!r} does not start with a number like '1.'")
        number, text = int(match.group(1)), match.group(2)
        if not text:
            raise InputError(f"choice {number} is empty")
        if number in numbered:
            raise InputError(f"choice number {number} appears twice")
        numbered[number] = text
    missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
    if missing:
        raise InputError(f"choices are not numbered 1..{max(numbered)}: missing {missing}")
    choices = tuple(numbered[n] for n in sorted(numbered))
    folded = [c.casefold() for c in choices]
    if len(set(folded)) != len(folded):
        raise InputError(f"the same choice appears twice in {list(choices)}")
    return choices


def _answer_number(value: Any) -> int:
    if isinstance(value, bool):
        raise InputError(f"answer must be a choice number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = re.match(r"^\s*(\d+)", str(value)) if value is not None else None
    if not match:
        raise InputError(f"answer must be a choice number like 2 or \"2\", got {value!r}")
    return int(match.group(1))


# --- obfuscation ----------------------------------------------------------------------


def parse_obfuscation(value: Any) -> Obfuscation:
    """Normalise a ``frames_to_blur`` value (see the module docstring) to {frame number: [polygon, ...]}."""
    if value is None:
        return {}
    if isinstance(value, float) and math.isnan(value):
        return {}
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputError(f"frames_to_blur is not valid JSON ({exc})") from exc
        return parse_obfuscation(value)
    result: Obfuscation = {}
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, Sequence):
        items = _list_items(value)
    else:
        raise InputError(f"frames_to_blur must be a mapping, a list or a JSON string, got {type(value).__name__}")
    for key, entries in items:
        if entries is None:
            continue  # a Parquet struct has a (null) field for every frame any row uses
        try:
            number = int(str(key).strip())
        except ValueError as exc:
            raise InputError(f"frames_to_blur: frame {key!r} is not a frame number") from exc
        if number < 1:
            raise InputError(f"frames_to_blur: frame numbers start at 1, got {number}")
        polygons = [_polygon(entry) for entry in _entries(entries)]
        polygons = [p for p in polygons if p]
        if polygons:
            result.setdefault(number, []).extend(polygons)
    return result


def _list_items(value: Sequence[Any]) -> list[tuple[Any, Any]]:
    items = []
    for index, element in enumerate(value):
        if isinstance(element, Mapping) and any(k in element for k in ("frame", "frame_number", "frame_idx")):
            key = next(element[k] for k in ("frame", "frame_number", "frame_idx") if k in element)
            polys = next((element[k] for k in ("polygons", "texts", "regions", "boxes") if k in element), None)
            items.append((key, polys))
        elif (
            isinstance(element, Sequence)
            and not isinstance(element, str)
            and len(element) == 2
            and isinstance(element[0], (int, str))
            and str(element[0]).strip().isdigit()
            and (element[1] is None or isinstance(element[1], (list, tuple)))
        ):
            items.append((element[0], element[1]))
        else:  # one entry per frame, starting at frame 1
            items.append((index + 1, element))
    return items


def _entries(entries: Any) -> list[Any]:
    if isinstance(entries, Mapping):
        return [entries]
    if isinstance(entries, Sequence) and not isinstance(entries, str):
        if entries and _is_point(entries[0]):
            return [entries]  # a single polygon given directly
        return list(entries)
    raise InputError(f"frames_to_blur: expected a list of regions per frame, got {type(entries).__name__}")


def _is_point(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "x" in value or "y" in value
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _polygon(entry: Any) -> list[tuple[float, float]]:
    if isinstance(entry, Mapping):
        poly = entry.get("bounding_poly") or entry.get("boundingPoly") or entry
        vertices = poly.get("vertices") if isinstance(poly, Mapping) else None
        if vertices is None and isinstance(poly, Mapping):
            vertices = poly.get("polygon") or poly.get("points")
    else:
        vertices = entry
    if not isinstance(vertices, Sequence) or isinstance(vertices, str):
        raise InputError(f"frames_to_blur: cannot read a polygon from {entry!r}")
    points = []
    for vertex in vertices:
        if isinstance(vertex, Mapping):  # Google Vision leaves out zero coordinates
            points.append((float(vertex.get("x") or 0), float(vertex.get("y") or 0)))
        elif _is_point(vertex):
            points.append((float(vertex[0]), float(vertex[1])))
        else:
            raise InputError(f"frames_to_blur: {vertex!r} is not an [x, y] point")
    return points


# --- loading ----------------------------------------------------------------------------


def load_actionatlas(source: str | Path | None = None) -> list[Question]:
    """Read the benchmark from a local .parquet/.jsonl file, or (None) from the Hugging Face hub.

    The hub path downloads the dataset's Parquet file with ``hf_hub_download``
    (no ``datasets`` library) and fails fast with an InputError when offline.
    Every validation error names the file and the 1-based row.
    """
    path = Path(source) if source is not None else _download_from_hub()
    rows = _read_rows(path)
    if not rows:
        raise InputError(f"ActionAtlas manifest {path} has no rows")
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        where = f"ActionAtlas manifest {path}, row {number}"
        question = _parse_row(row, where)
        if question.question_id in seen:
            raise InputError(f"{where}: duplicate id {question.question_id!r} (first at row {seen[question.question_id]})")
        seen[question.question_id] = number
        questions.append(question)
    return questions


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"ActionAtlas manifest not found: {path}")
    return read_rows(path, "ActionAtlas manifest")


def _parse_row(row: Mapping[str, Any], where: str) -> Question:
    missing = [c for c in REQUIRED_COLUMNS if c not in row]
    if missing:
        raise InputError(f"{where}: missing columns {missing}")
    question_id = _text(row["id"])
    if not question_id:
        raise InputError(f"{where}: empty id")
    check_id(question_id, "question id", where)
    youtube_id = _text(row["youtube_id"])
    # A URL in place of the id points at a mirror (a local copy of the videos, or a test server).
    if not (_YOUTUBE_ID.fullmatch(youtube_id) or re.match(r"(https?|file)://", youtube_id, re.IGNORECASE)):
        raise InputError(
            f"{where} (id {question_id}): youtube_id {row['youtube_id']!r} is neither an 11-character YouTube id nor a mirror URL"
        )
    start, end = _seconds(row["start_timestamp"], "start_timestamp", where), _seconds(row["end_timestamp"], "end_timestamp", where)
    if start < 0:
        raise InputError(f"{where} (id {question_id}): start_timestamp is negative ({start})")
    start, end = round(start, 1), round(end, 1)
    if not end > start:
        raise InputError(f"{where} (id {question_id}): end ({end} s) is not after start ({start} s), after rounding to 0.1 s")
    domain, action = _text(row["domain"]), _text(row["action"])
    if not domain or not action:
        raise InputError(f"{where} (id {question_id}): empty {'domain' if not domain else 'action'}")
    try:
        choices = parse_choices(row["choices_str"] if isinstance(row["choices_str"], str) else "")
    except InputError as exc:
        raise InputError(f"{where} (id {question_id}): {exc}") from None
    for number, choice in enumerate(choices, start=1):
        check_id(class_id_for(domain, choice), "class id", f"{where} (id {question_id}), choice {number}")
    try:
        answer = _answer_number(row["answer"])
    except InputError as exc:
        raise InputError(f"{where} (id {question_id}): {exc}") from None
    if not 1 <= answer <= len(choices):
        raise InputError(
            f"{where} (id {question_id}): answer {answer} is out of range for {len(choices)} choices (1..{len(choices)})"
        )
    if choices[answer - 1].casefold() != action.casefold():
        log.debug("%s (id %s): action %r differs from the answer's text %r", where, question_id, action, choices[answer - 1])
    descriptions = row.get("choice_descriptions")
    if isinstance(descriptions, str):
        try:
            descriptions = json.loads(descriptions)
        except json.JSONDecodeError:
            descriptions = [descriptions]
    descriptions = tuple(str(d) for d in descriptions) if isinstance(descriptions, Sequence) else ()
    raw_obfuscation = next((row[c] for c in OBFUSCATION_COLUMNS if row.get(c) is not None), None)
    try:
        obfuscation = parse_obfuscation(raw_obfuscation)
    except InputError as exc:
        raise InputError(f"{where} (id {question_id}): {exc}") from None
    return Question(
        question_id=question_id,
        youtube_id=youtube_id,
        start_s=start,
        end_s=end,
        domain=domain,
        action=action,
        choices=choices,
        answer_index=answer - 1,
        obfuscation=obfuscation,
        question=_text(row.get("question")),
        choice_descriptions=descriptions,
    )


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _seconds(value: Any, column: str, where: str) -> float:
    try:
        seconds = float(str(value).strip()) if value is not None else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise InputError(f"{where}: {column} must be a number of seconds, got {value!r}")
    return seconds


def _download_from_hub(cache_dir: str | Path | None = None) -> Path:
    """The hub's Parquet file: from the local cache when there, else downloaded; fails fast offline."""
    suggestion = (
        f"download it where you have internet (huggingface.co/datasets/{HF_DATASET}, file {HF_FILENAME} "
        f"of revision {HF_REVISION}) and pass --manifest <local copy>.parquet (or .jsonl)"
    )
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise InputError(f"cannot fetch the ActionAtlas dataset {HF_DATASET}: huggingface_hub is missing; {suggestion}") from exc
    kwargs = {"repo_id": HF_DATASET, "filename": HF_FILENAME, "repo_type": "dataset", "revision": HF_REVISION}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    try:
        return Path(hf_hub_download(**kwargs, local_files_only=True))
    except Exception:
        pass  # not cached: go to the network, unless it is off
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or getattr(
        constants, "HF_HUB_OFFLINE", False
    )
    if offline:
        raise InputError(f"cannot fetch the ActionAtlas dataset {HF_DATASET}: HF_HUB_OFFLINE is set and it is not cached; {suggestion}")
    endpoint = urllib.parse.urlsplit(getattr(constants, "ENDPOINT", "https://huggingface.co"))
    try:  # one quick probe: the hub client would retry for ~25 s before giving up
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=5).close()
    except OSError as exc:
        raise InputError(f"cannot fetch the ActionAtlas dataset {HF_DATASET}: {endpoint.hostname} is unreachable ({exc}); {suggestion}") from None
    try:
        return Path(hf_hub_download(**kwargs, etag_timeout=10))
    except Exception as exc:
        raise InputError(f"cannot fetch the ActionAtlas dataset {HF_DATASET}: {exc}; {suggestion}") from None


# --- classes --------------------------------------------------------------------------


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def class_id_for(domain: str, action: str) -> str:
    """A stable class id for a (domain, action) pair: readable slugs plus a short hash of the normalised pair.

    Case and runs of whitespace do not matter ("Axe  kick" == "axe kick"); any
    other difference gives another class. The hash keeps two actions whose
    slugs collide (e.g. "1/2 turn" and "1-2 turn") apart.
    """
    digest = hashlib.sha256(f"{_normalise(domain)}\x1f{_normalise(action)}".encode()).hexdigest()[:6]
    return f"{slugify(domain) or 'domain'}--{slugify(action) or 'action'}-{digest}"


def question_classes(questions: Sequence[Question]) -> QuestionClasses:
    """Every distinct (domain, action) of the choices as a ClassSpec (steps=None), plus id-keyed joins.

    Classes come in order of first appearance. Raises InputError when two
    choices of one question are the same class.
    """
    classes: dict[str, ClassSpec] = {}
    candidates: dict[tuple[str, int], str] = {}
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for question in questions:
        ids = []
        for index, choice in enumerate(question.choices):
            class_id = class_id_for(question.domain, choice)
            if class_id in ids:
                raise InputError(f"question {question.question_id}: choices {ids.index(class_id) + 1} and {index + 1} are the same class ({choice!r})")
            ids.append(class_id)
            classes.setdefault(class_id, ClassSpec(class_id=class_id, action=choice, domain=question.domain, steps=None))
            candidates[(question.question_id, index)] = class_id
        counts[question.question_id] = len(question.choices)
        labels[question.question_id] = candidates[(question.question_id, question.answer_index)]
    return QuestionClasses(classes=list(classes.values()), candidates=candidates, labels=labels, choice_counts=counts)


def video_specs(questions: Sequence[Question], joined: QuestionClasses | None = None) -> list[VideoSpec]:
    """One video per question (video_id = question id, source = its YouTube id), candidates in choice order."""
    joined = joined or question_classes(questions)
    return [
        VideoSpec(
            video_id=q.question_id,
            source=q.youtube_id,
            start_s=q.start_s,
            end_s=q.end_s,
            domain=q.domain,
            candidates=joined.candidate_ids(q.question_id),
            label=joined.labels[q.question_id],
            obfuscation=dict(q.obfuscation) or None,
        )
        for q in questions
    ]
