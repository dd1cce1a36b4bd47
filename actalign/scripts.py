"""Script providers: where each class's texts (steps, attributes, sub-texts) come from.

``file``: written by hand in the classes file; every class needs them.
``openai``: written by an LLM (``actalign.llm``); a class that has hand-written
texts keeps them, only the others go to the LLM. The scripts stage
(``tasks/scripts.py``) stores hand-written texts itself and asks an LLM provider
for the rest through ``script_key``, ``requests_for`` and ``generate_many``: a
new LLM provider is one module implementing those (see ``OpenAIScriptProvider``),
registered in ``PROVIDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from actalign.classes import ClassSpec
from actalign.errors import InputError

if TYPE_CHECKING:
    from actalign.config import RunConfig
    from actalign.llm.openai_provider import OpenAIScriptProvider

MAX_STEPS = 32  # far above the paper's 4-10; a longer script is almost surely a parsing accident


class ScriptProvider(Protocol):
    name: str

    def check_credentials(self) -> None:
        """Raise InputError before any work when the provider cannot be used (e.g. no API key)."""
        ...


class FileScriptProvider:
    """Steps written by hand in the classes file."""

    name = "file"

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


def _openai_provider(settings: Any = None, prompt: str | None = None) -> ScriptProvider:
    from actalign.llm.openai_provider import OpenAIScriptProvider  # imported on use: the openai client is heavy

    return OpenAIScriptProvider(settings) if prompt is None else OpenAIScriptProvider(settings, prompt)


# name -> factory taking the provider's settings and prompt template (None: defaults); the file provider has none.
PROVIDERS: dict[str, Callable[..., ScriptProvider]] = {
    FileScriptProvider.name: lambda settings=None, prompt=None: FileScriptProvider(),
    "openai": _openai_provider,
}


def make_provider(name: str, settings: Any = None, prompt: str | None = None) -> ScriptProvider:
    """Build a registered provider by name; for ``openai``, ``settings`` is an ``actalign.llm.LLMSettings``
    and ``prompt`` the template of the kind of text it writes (``RunConfig.prompts``)."""
    if name not in PROVIDERS:
        raise InputError(f"unknown script provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name](settings, prompt)


def llm_provider(config: RunConfig, kind: str) -> OpenAIScriptProvider:
    """The LLM provider writing the texts of ``kind``: the run's LLM settings and that kind's template."""
    return make_provider("openai", config.llm, config.prompt_for(kind))  # type: ignore[return-value]


def provider_config(config: RunConfig, kind: str) -> dict:
    """What the LLM scripts of ``kind`` depend on (model, template and its hash, ...), for plans and records."""
    return llm_provider(config, kind).config()
