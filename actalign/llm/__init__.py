"""LLM-written action scripts: prompts, the ``openai`` provider, answer validation, limits, dry runs.

Prefect-free core. The pipeline's tasks build an ``OpenAIScriptProvider``
from ``LLMSettings``, turn questions into ``ScriptRequest``s with
``requests_for`` (deduplicated by key, so stored scripts can be skipped),
and call ``generate`` per request; ``plan_requests`` is the dry run.

The names that need the openai client (about 0.6 s to import) load on first
use, so ``actalign.scripts`` and the settings stay cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actalign.llm.errors import InvalidAnswerError, LLMRequestError, ScriptGenerationError
from actalign.llm.prompts import PromptTemplate, builtin_templates, load_template
from actalign.llm.ratelimit import RateLimiter, RequestLimits
from actalign.llm.results import GeneratedScript, ScriptRequest
from actalign.llm.settings import DEFAULT_LLM_MODEL, LLMSettings

if TYPE_CHECKING:
    from actalign.llm.openai_provider import GenerationBatch, OpenAIScriptProvider, question_actions
    from actalign.llm.request_plan import RequestPlan, plan_requests

_LAZY = {
    "GenerationBatch": "actalign.llm.openai_provider",
    "OpenAIScriptProvider": "actalign.llm.openai_provider",
    "question_actions": "actalign.llm.openai_provider",
    "RequestPlan": "actalign.llm.request_plan",
    "plan_requests": "actalign.llm.request_plan",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actalign.llm' has no attribute {name!r}")


__all__ = [
    "DEFAULT_LLM_MODEL",
    "GeneratedScript",
    "GenerationBatch",
    "InvalidAnswerError",
    "LLMRequestError",
    "LLMSettings",
    "OpenAIScriptProvider",
    "PromptTemplate",
    "RateLimiter",
    "RequestLimits",
    "RequestPlan",
    "ScriptGenerationError",
    "ScriptRequest",
    "builtin_templates",
    "load_template",
    "plan_requests",
    "question_actions",
]
