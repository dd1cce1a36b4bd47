"""Dry run: how many LLM requests a set of questions needs, and roughly what they cost.

Estimates, not measurements:

* prompt tokens: the rendered messages' characters / 4 (``CHARS_PER_TOKEN``,
  OpenAI's rule of thumb for English) plus a few tokens per message;
* completion tokens: per action, the middle of the template's step range
  times ``words_per_step`` (from the template) at 1.35 tokens per word, plus
  JSON punctuation;
* follow-ups (invalid answers) and retries are not counted: real use costs a
  little more;
* cost: ``PRICES_USD_PER_1M`` below, OpenAI list prices (standard tier, no
  batch or cached-input discounts) as the author knew them when writing the
  table on ``PRICES_WRITTEN`` with no way to check them online. Prices
  change: check https://openai.com/api/pricing before budgeting. A local
  endpoint costs 0; a model not in the table gives ``cost_usd=None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from actalign.llm.openai_provider import OpenAIScriptProvider, ScriptRequest
from actalign.llm.settings import LLMSettings

CHARS_PER_TOKEN = 4.0
TOKENS_PER_WORD = 1.35
TOKENS_PER_MESSAGE = 4
PRICES_WRITTEN = "2026-11-23"
# model -> (USD per 1M input tokens, USD per 1M output tokens)
PRICES_USD_PER_1M: dict[str, tuple[float, float]] = {
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o-2024-11-20": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1-2025-04-14": (2.00, 8.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini-2025-04-14": (0.40, 1.60),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano-2025-04-14": (0.10, 0.40),
    "gpt-4.1-nano": (0.10, 0.40),
}


@dataclass(frozen=True)
class RequestPlan:
    """What a run would send. Token and cost figures are estimates (see the module docstring)."""

    model: str
    groups: int  # questions (or classes) given
    requests: int  # distinct requests after deduplication by key
    stored: int  # of those, requests whose scripts are all in the store already
    pending: tuple[ScriptRequest, ...]  # the requests still to send
    scripts: int  # scripts the pending requests produce
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: the model is not in the price table

    @property
    def to_send(self) -> int:
        return len(self.pending)

    def describe(self) -> str:
        """One paragraph for a dry run's output."""
        if self.cost_usd is None:
            cost = f"unknown ({self.model} is not in the price table)"
        else:
            cost = f"about ${self.cost_usd:.2f} (estimate; list prices as of {PRICES_WRITTEN})"
        return (
            f"{self.to_send} LLM request(s) to send for {self.scripts} script(s) with {self.model} "
            f"({self.stored} of {self.requests} distinct request(s) already stored, from {self.groups} group(s)); "
            f"about {self.prompt_tokens} prompt and {self.completion_tokens} completion tokens, "
            f"without follow-ups or retries; cost {cost}"
        )


def price_of(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens, trying the name without a date suffix too."""
    if model in PRICES_USD_PER_1M:
        return PRICES_USD_PER_1M[model]
    return PRICES_USD_PER_1M.get(re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model))


def estimate_tokens(provider: OpenAIScriptProvider, request: ScriptRequest) -> tuple[int, int]:
    """(prompt, completion) token estimates for one request without follow-ups."""
    template = provider.template
    messages = template.render(request.domain, request.actions, per_question=request.per_question)
    prompt = sum(len(message["content"]) for message in messages) / CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * len(messages)
    steps = (template.min_steps + template.max_steps) / 2
    per_step = template.words_per_step * TOKENS_PER_WORD + 3  # quotes, comma, spacing
    completion = sum(12 + len(action) / CHARS_PER_TOKEN + steps * per_step for action in request.actions) + 5
    return round(prompt), round(completion)


def plan_requests(
    settings: LLMSettings | OpenAIScriptProvider,
    groups: Iterable[tuple[str | None, Sequence[str]]],
    have_key: Callable[[str], bool] | None = None,
) -> RequestPlan:
    """Count the requests ``groups`` (domain, candidate actions) need, skipping those whose every
    script key ``have_key`` reports as stored. Sends nothing and needs no API key."""
    provider = settings if isinstance(settings, OpenAIScriptProvider) else OpenAIScriptProvider(settings)
    groups = list(groups)
    requests = provider.requests_for(groups)
    have = have_key or (lambda key: False)
    pending = tuple(request for request in requests if not all(have(key) for key in request.script_keys))
    prompt_tokens = completion_tokens = 0
    for request in pending:
        prompt, completion = estimate_tokens(provider, request)
        prompt_tokens += prompt
        completion_tokens += completion
    price = (0.0, 0.0) if provider.settings.is_local() else price_of(provider.settings.model)
    cost = None if price is None else (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
    return RequestPlan(
        model=provider.settings.model,
        groups=len(groups),
        requests=len(requests),
        stored=len(requests) - len(pending),
        pending=pending,
        scripts=sum(len(request.actions) for request in pending),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
    )
