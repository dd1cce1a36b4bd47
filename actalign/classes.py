"""Candidate classes: an action name, an optional domain, and (optionally) hand-written steps.

The classes file is YAML or JSON, either a list of classes or ``{"classes": [...]}``::

    classes:
      - id: axe-kick              # optional; derived from the action name when absent
        action: Axe kick
        domain: taekwondo         # optional
        steps: ["raise the leg straight up", "bring the heel down"]
        attributes: ["raised leg", "heel strike"]   # optional, for attribute-saliency
        subtexts: ["This action is ..."]            # optional, for storyboard

Texts are optional here because the script *provider* decides where they come
from (see ``actalign.scripts``); the file provider requires steps. The three
kinds of text (``TEXT_KINDS``) are handled alike: hand-written when the file
has them, else written by the LLM provider with the kind's prompt template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actalign.errors import InputError
from actalign.ids import check_id
from actalign.structured_files import read_structured_file

TEXT_KINDS = ("steps", "attributes", "subtexts")  # the ordered script, attribute keywords, storyboard sub-texts


@dataclass(frozen=True)
class ClassSpec:
    """One candidate action class."""

    class_id: str
    action: str
    domain: str | None
    steps: tuple[str, ...] | None
    attributes: tuple[str, ...] | None = None
    subtexts: tuple[str, ...] | None = None

    def texts(self, kind: str) -> tuple[str, ...] | None:
        """The hand-written texts of one kind (``TEXT_KINDS``), None when the file has none."""
        return getattr(self, kind)

    def domain_or(self, fallback: str | None) -> str | None:
        """The class's own domain, else the video's (a manifest row may name the sport)."""
        return self.domain or fallback


def slugify(text: str) -> str:
    """A stable lowercase id from a free-text name ("Axe kick" -> "axe-kick")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def load_classes(path: str | Path) -> list[ClassSpec]:
    """Read and validate a classes file; every problem names the file and the class."""
    path = Path(path)
    data = read_structured_file(path, "classes")
    entries = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise InputError(f"classes file {path} has no classes: expected a list, or a mapping with a 'classes' list")
    classes: dict[str, ClassSpec] = {}
    for number, entry in enumerate(entries, start=1):
        spec = _parse_class(entry, f"{path}, class #{number}")
        if spec.class_id in classes:
            raise InputError(f"{path}, class #{number}: duplicate class id {spec.class_id!r}; give each class a unique 'id'")
        classes[spec.class_id] = spec
    return list(classes.values())


def _parse_class(entry: Any, where: str) -> ClassSpec:
    if not isinstance(entry, dict) or not str(entry.get("action") or "").strip():
        raise InputError(f"{where}: each class needs a non-empty 'action' (the class name)")
    action = str(entry["action"]).strip()
    class_id = str(entry.get("id") or slugify(action)).strip()
    if not class_id:
        raise InputError(f"{where}: cannot derive an id from action {action!r}; add an 'id'")
    check_id(class_id, "class id", where)
    domain = str(entry["domain"]).strip() if entry.get("domain") else None
    texts = {kind: _text_list(entry.get(kind), kind, f"{where} ({class_id})") for kind in TEXT_KINDS}
    return ClassSpec(class_id=class_id, action=action, domain=domain, **texts)


def _text_list(value: Any, kind: str, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(f"{where}: '{kind}' must be a list of strings")
    for number, text in enumerate(value, start=1):
        if not isinstance(text, str):  # str() would make texts of null, {x: 1} or 3.5
            raise InputError(f"{where}: an entry of '{kind}' is not a text (#{number}: {text!r}); write it as a quoted string")
        if not text.strip():
            raise InputError(f"{where}: an entry of '{kind}' is empty (#{number}); remove it or write it out")
    return tuple(text.strip() for text in value)


def resolve_class(name: str, classes: dict[str, ClassSpec]) -> str | None:
    """Map a manifest's class reference (an id, or an action name in any case) to a class id."""
    if name in classes:
        return name
    folded = name.strip().casefold()
    for spec in classes.values():
        if folded in (spec.class_id.casefold(), spec.action.casefold()):
            return spec.class_id
    return None
