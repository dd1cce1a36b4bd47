"""The one reader of user-written YAML and JSON (classes, configurations, prompt templates), so each gets the same defences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

from actalign.errors import InputError


class NoAliasLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: about 20x faster on big files
    """A safe loader that refuses aliases: a few hundred bytes of nested ``*a`` expand to gigabytes (billion laughs)."""

    def get_single_node(self) -> yaml.Node | None:
        root = super().get_single_node()
        seen: set[int] = set()
        stack = [root] if root is not None else []
        while stack:  # an alias is a node met twice; stop at the first, before anything expands it
            node = stack.pop()
            if id(node) in seen:
                raise ComposerError(None, None, "YAML aliases (*name) are not allowed; write out the value anchored (&name) here", node.start_mark)
            seen.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
            elif isinstance(node, yaml.MappingNode):
                stack.extend(part for pair in node.value for part in pair)
        return root


def parse_yaml(text: str) -> Any:
    """YAML a user wrote: safe types only, and no aliases."""
    return yaml.load(text, Loader=NoAliasLoader)


def read_structured_file(path: Path, what: str) -> Any:
    """Parse a YAML or JSON file (a UTF-8 BOM allowed), turning every failure into an InputError that names the file."""
    if not path.is_file():  # a FIFO or a device would block or never end
        raise InputError(f"{what} file not found: {path}" if not path.exists() else f"{what} file {path} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8-sig")
        return json.loads(text) if path.suffix.lower() == ".json" else parse_yaml(text)
    except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError, yaml.YAMLError) as exc:  # RecursionError: JSON nested too deep
        raise InputError(f"cannot parse {what} file {path}: {exc}") from exc
