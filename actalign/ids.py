"""Ids of videos, questions and classes: what an input may use as an id, and the file names made from one.

Ids are shown in tables, reports and SQL, so the rule keeps every id real
inputs use (file stems such as ``demo-000`` or ``My clip (2)``, YouTube and
question ids, class names with spaces, apostrophes or accents) and refuses
what only an accident or an attack gives: path separators, ``.`` and ``..``,
control characters (NUL, newlines, terminal escapes), surrounding spaces and
ids too long to read. An id never names a file itself: ``file_stem`` does.
"""

from __future__ import annotations

import hashlib
import re

from actalign.errors import InputError

MAX_LENGTH = 128
RULE = (
    f"an id has 1 to {MAX_LENGTH} printable characters (letters of any script, digits, spaces, punctuation), "
    "without '/', '\\' or control characters, no leading or trailing space, and is not '.' or '..'"
)


def id_problem(value: str) -> str | None:
    """What breaks the rule in ``value``, or None when it is a valid id."""
    if not 1 <= len(value) <= MAX_LENGTH:
        return f"it has {len(value)} characters"
    if value != value.strip():
        return "it starts or ends with a space"
    if value in (".", ".."):
        return "it is a path component"
    bad = next((char for char in value if char in "/\\" or not char.isprintable()), None)
    return f"it contains {bad!r}" if bad else None


def check_id(value: str, what: str, where: str) -> str:
    """``value`` when it is a valid id, else an InputError naming the input (``where``), the id and the rule."""
    if problem := id_problem(value):
        shown = repr(value) if len(value) <= 60 else repr(value[:60]) + "..."
        raise InputError(f"{where}: {what} {shown} is not a valid id: {problem}; {RULE}")
    return value


def file_stem(value: str) -> str:
    """A file name for an id: its ASCII letters, digits, '-' and '_' (at most 40), then a hash of the whole id,
    so that the name is short and safe for any id and two ids never share one."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-")[:40]
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug}-{digest}" if slug else digest
