"""Script providers: where each class's ordered sub-action steps come from.

A provider turns classes into scripts. ``file``: steps written by hand in the
classes file. ``openai``: steps written by an LLM (``actalign.llm``); a class
that has hand-written steps keeps them, only the others go to the LLM.
Everything a provider's output depends on goes into ``config()``, which
feeds the script stage key: change it and the scripts are recomputed. An LLM
script also carries its own content key (``Script.key``: model, endpoint,
prompt template hash, temperature, seed, domain, action, candidate set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actalign.classes import ClassSpec
from actalign.errors import InputError
from actalign.llm.results import GeneratedScript  # a plain dataclass: does not import the openai client

MAX_STEPS = 32  # far above the paper's 4-10; a longer script is almost surely a parsing accident


@dataclass(frozen=True)
class Script:
    """The ordered steps of one class, with the provider that wrote them."""

    class_id: str
    steps: tuple[str, ...]
    provider: str
    key: str | None = None  # the provider's content key of this script (LLM scripts); None for hand-written steps
    generated: GeneratedScript | None = None  # LLM details: model, template, raw answer, token usage


class ScriptProvider(Protocol):
    name: str

    def config(self) -> dict[str, Any]:
        """Everything the scripts depend on besides the class itself (model, prompt hash, ...)."""
        ...

    def scripts(self, classes: Sequence[ClassSpec]) -> dict[str, Script]:
        """One script per class id; raise InputError for a class it cannot script (an LLM provider raises
        ``actalign.llm.ScriptGenerationError``, an ItemError, when a request fails)."""
        ...

    def check_credentials(self) -> None:
        """Raise InputError before any work when the provider cannot be used (e.g. no API key)."""
        ...


class FileScriptProvider:
    """Steps written by hand in the classes file."""

    name = "file"

    def config(self) -> dict[str, Any]:
        return {"provider": self.name}

    def scripts(self, classes: Sequence[ClassSpec]) -> dict[str, Script]:
        return {spec.class_id: Script(spec.class_id, validate_texts(spec), self.name) for spec in classes}

    def check_credentials(self) -> None:
        """Hand-written steps need none."""


def validate_texts(spec: ClassSpec, kind: str = "steps") -> tuple[str, ...]:
    """Hand-written texts need 1..MAX_STEPS distinct entries; say which class and what to do otherwise."""
    texts = spec.texts(kind)
    if not texts:
        raise InputError(f"class {spec.class_id!r} ({spec.action}) has no {kind}; write its '{kind}' in the classes file")
    if len(texts) > MAX_STEPS:
        raise InputError(f"class {spec.class_id!r} has {len(texts)} {kind}; at most {MAX_STEPS} are allowed")
    if len(set(texts)) != len(texts):
        raise InputError(f"class {spec.class_id!r} repeats an entry of its {kind}; make each distinct")
    return texts


def _openai_provider(settings: Any = None) -> ScriptProvider:
    from actalign.llm.openai_provider import OpenAIScriptProvider  # imported on use: the openai client is heavy

    return OpenAIScriptProvider(settings)


# name -> factory taking the provider's settings (None: defaults); the file provider has none.
PROVIDERS: dict[str, Callable[..., ScriptProvider]] = {
    FileScriptProvider.name: lambda settings=None: FileScriptProvider(),
    "openai": _openai_provider,
}


def make_provider(name: str, settings: Any = None) -> ScriptProvider:
    """Build a registered provider by name; ``settings`` is an ``actalign.llm.LLMSettings`` for ``openai``."""
    if name not in PROVIDERS:
        raise InputError(f"unknown script provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name](settings)
