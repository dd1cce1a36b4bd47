"""Versioned prompt templates for LLM-written scripts.

A template is a YAML file (``actalign/prompts/<name>.yaml`` ships
``context-rich`` and ``short-fixed``, the paper's two strategies; any other
path works too) with a name, a version, step-count bounds and the prompt
texts: ``system``, ``question`` (all candidates of one question) and
``class`` (one action). Placeholders use ``string.Template`` syntax
(``$domain``, ``$candidates``, ...) so the JSON examples in the text need no
escaping. ``template_hash`` is a hash of the file's bytes and is part of every
script key: editing a template regenerates exactly the scripts written with it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from string import Template

import yaml

from actalign.errors import InputError
from actalign.structured_files import parse_yaml

DEFAULT_TEMPLATE = "context-rich"
MAX_TEMPLATE_STEPS = 32  # the same ceiling as actalign.scripts.MAX_STEPS
NO_DOMAIN = "not given; infer it from the action names"
PLACEHOLDERS = ("domain", "action", "candidates", "count", "steps", "min_steps", "max_steps", "max_words")


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt strategy, loaded from a template file."""

    name: str
    version: int
    template_hash: str  # sha256 of the file's bytes (first 16 hex digits)
    min_steps: int
    max_steps: int
    max_words: int | None  # a longer step is sent back as invalid; None: no limit
    words_per_step: float  # typical step length, for dry-run token estimates only
    system: str
    question: str
    single: str  # the "class" text: one action per request
    source: str  # where it was loaded from (for messages only, never part of a key)
    path: str = ""  # the file read, absolute (a shipped template's inside the package)

    @property
    def label(self) -> str:
        """``name@version`` as shown to users."""
        return f"{self.name}@v{self.version}"

    def steps_phrase(self) -> str:
        if self.min_steps == self.max_steps:
            return f"exactly {self.min_steps}"
        return f"between {self.min_steps} and {self.max_steps}"

    def render(self, domain: str | None, actions: Sequence[str], *, per_question: bool) -> list[dict[str, str]]:
        """The chat messages (system, user) asking for the scripts of ``actions``."""
        values = self._values(domain, actions)
        text = self.question if per_question else self.single
        return [
            {"role": "system", "content": Template(self.system).substitute(values).strip()},
            {"role": "user", "content": Template(text).substitute(values).strip()},
        ]

    def _values(self, domain: str | None, actions: Sequence[str]) -> dict[str, str]:
        return {
            "domain": domain or NO_DOMAIN,
            "action": actions[0] if actions else "",
            "candidates": format_candidates(actions),
            "count": str(len(actions)),
            "steps": self.steps_phrase(),
            "min_steps": str(self.min_steps),
            "max_steps": str(self.max_steps),
            "max_words": str(self.max_words or "any number of"),
        }


def format_candidates(actions: Sequence[str]) -> str:
    """The numbered candidate list as it appears in prompts: ``1. name`` per line (1-based)."""
    return "\n".join(f"{number}. {action}" for number, action in enumerate(actions, start=1))


def builtin_templates() -> list[str]:
    """Names of the templates shipped in ``actalign/prompts``."""
    folder = resources.files("actalign") / "prompts"
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_template(name_or_path: str | Path = DEFAULT_TEMPLATE) -> PromptTemplate:
    """A shipped template by name (``context-rich``, ``short-fixed``) or a template file by path.

    Every reader of a run's templates (script keys, plans, requests, results) calls this; each
    distinct content is parsed once per process, and the file is read every time, so an edit counts.
    """
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise InputError(f"prompt template file not found: {path}")
        return _parsed(path.read_bytes(), str(path), str(path.resolve()))
    resource = resources.files("actalign") / "prompts" / f"{text}.yaml"
    if not resource.is_file():
        raise InputError(f"unknown prompt template {text!r}; choose one of {', '.join(builtin_templates())} or give a .yaml path")
    return _parsed(resource.read_bytes(), f"actalign/prompts/{text}.yaml", str(resource))


@functools.lru_cache(maxsize=64)
def _parsed(data: bytes, source: str, path: str) -> PromptTemplate:
    return replace(parse_template(data, source), path=path)


def parse_template(data: bytes, source: str) -> PromptTemplate:
    """Validate a template file's content; every problem is an InputError naming the file."""
    try:
        raw = parse_yaml(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"cannot parse prompt template {source}: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(f"prompt template {source} must be a mapping with name, version, min_steps, max_steps, system, question, class")
    missing = [field for field in ("name", "version", "min_steps", "max_steps", "system", "question", "class") if field not in raw]
    if missing:
        raise InputError(f"prompt template {source} lacks {', '.join(missing)}")
    try:
        template = PromptTemplate(
            name=str(raw["name"]),
            version=int(raw["version"]),
            template_hash=hashlib.sha256(data).hexdigest()[:16],
            min_steps=int(raw["min_steps"]),
            max_steps=int(raw["max_steps"]),
            max_words=int(raw["max_words"]) if raw.get("max_words") is not None else None,
            words_per_step=float(raw.get("words_per_step", 10)),
            system=str(raw["system"]),
            question=str(raw["question"]),
            single=str(raw["class"]),
            source=source,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"prompt template {source}: {exc}") from exc
    if not 1 <= template.min_steps <= template.max_steps <= MAX_TEMPLATE_STEPS:
        raise InputError(f"prompt template {source}: need 1 <= min_steps <= max_steps <= {MAX_TEMPLATE_STEPS}")
    if template.max_words is not None and template.max_words < 1:
        raise InputError(f"prompt template {source}: max_words must be at least 1")
    for field, text in (("system", template.system), ("question", template.question), ("class", template.single)):
        try:
            Template(text).substitute(template._values("d", ["a", "b"]))
        except (KeyError, ValueError) as exc:
            raise InputError(
                f"prompt template {source}, {field!r}: bad placeholder {exc}; use only "
                + ", ".join(f"${name}" for name in PLACEHOLDERS)
                + " (write $$ for a dollar sign)"
            ) from exc
    if "$candidates" not in template.question and "${candidates}" not in template.question:
        raise InputError(f"prompt template {source}: the 'question' text must list the candidates ($candidates)")
    return template
