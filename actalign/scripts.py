"""Script providers: where each class's ordered sub-action steps come from.

A provider turns classes into scripts. This version ships the ``file``
provider (steps written by hand in the classes file); an LLM provider is a
new class with the same two members, registered in ``PROVIDERS``.
Everything a provider's output depends on goes into ``config()``, which
feeds the script stage key: change it and the scripts are recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actalign.classes import ClassSpec
from actalign.errors import InputError

MAX_STEPS = 32  # far above the paper's 4-10; a longer script is almost surely a parsing accident


@dataclass(frozen=True)
class Script:
    """The ordered steps of one class, with the provider that wrote them."""

    class_id: str
    steps: tuple[str, ...]
    provider: str


class ScriptProvider(Protocol):
    name: str

    def config(self) -> dict[str, Any]:
        """Everything the scripts depend on besides the class itself (model, prompt hash, ...)."""
        ...

    def scripts(self, classes: Sequence[ClassSpec]) -> dict[str, Script]:
        """One script per class id; raise InputError for a class it cannot script."""
        ...


class FileScriptProvider:
    """Steps written by hand in the classes file."""

    name = "file"

    def config(self) -> dict[str, Any]:
        return {"provider": self.name}

    def scripts(self, classes: Sequence[ClassSpec]) -> dict[str, Script]:
        return {spec.class_id: Script(spec.class_id, validate_steps(spec), self.name) for spec in classes}


def validate_steps(spec: ClassSpec) -> tuple[str, ...]:
    """A script needs 1..MAX_STEPS distinct non-empty steps; say which class and what to do otherwise."""
    if not spec.steps:
        raise InputError(f"class {spec.class_id!r} ({spec.action}) has no steps; write its ordered 'steps' in the classes file")
    if len(spec.steps) > MAX_STEPS:
        raise InputError(f"class {spec.class_id!r} has {len(spec.steps)} steps; at most {MAX_STEPS} are allowed")
    if len(set(spec.steps)) != len(spec.steps):
        raise InputError(f"class {spec.class_id!r} repeats a step; make each step distinct")
    return spec.steps


PROVIDERS: dict[str, type] = {FileScriptProvider.name: FileScriptProvider}


def make_provider(name: str) -> ScriptProvider:
    """Build a registered provider by name."""
    if name not in PROVIDERS:
        raise InputError(f"unknown script provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name]()
