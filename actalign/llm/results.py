"""The provider's plain result types, importable without the openai client (``actalign.scripts`` uses them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScriptRequest:
    """One LLM conversation: one action (class granularity) or a question's candidates (sorted)."""

    key: str
    domain: str | None
    actions: tuple[str, ...]
    script_keys: tuple[str, ...]  # the script key of each action, same order
    per_question: bool

    def key_of(self, action: str) -> str:
        return self.script_keys[self.actions.index(action)]


@dataclass(frozen=True)
class GeneratedScript:
    """One action's script as the LLM wrote it, with everything needed to audit and reproduce it.

    Usage and request counts are those of the whole request, shared by every
    script of a question: sum them over distinct ``request_key`` values.
    """

    key: str
    domain: str | None
    action: str
    steps: tuple[str, ...]
    provider: str
    model: str  # as requested
    response_model: str  # as reported by the server (the snapshot that answered)
    template: str
    template_version: int
    template_hash: str
    request_key: str
    response_format: str  # json_schema, json_object or text: what the server accepted
    raw_response: str  # the final (valid) answer text
    prompt_tokens: int
    completion_tokens: int
    requests: int  # answered requests, follow-ups included
