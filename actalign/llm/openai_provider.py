"""The ``openai`` script provider: scripts written by an LLM through the official openai client.

Works against the OpenAI API, Azure OpenAI (``api="azure"``) and any
OpenAI-compatible server (``base_url``: vLLM, Ollama, llama.cpp, ...).

Granularity (``LLMSettings.granularity``), a trade-off:

* ``question`` (default): one request per question, listing all its
  candidates. The model sees the alternatives and writes *contrastive* steps,
  stressing what tells close candidates apart (what zero-shot classification
  among 4-5 similar actions needs). One request instead of k, and the shared
  instructions are paid once: fewer requests and prompt tokens per question.
  But a class's script then depends on its competitors: the same class gets a
  different script in each distinct candidate set (less consistency, cache
  reuse only for identical sets), and one bad candidate sends the whole
  question's answer back.
* ``class``: one request per (domain, action). Identical classes across
  questions are generated once and reused everywhere (best cache reuse and
  consistency, one script per class), a failure touches one class only, but
  there is no contrast between candidates, and there are as many requests as
  distinct classes, each repeating the instructions.

Structured output: ``response_format`` json_schema where the server supports
it; when the server rejects it (HTTP 400/422 naming the response format) the
provider falls back to JSON mode, then to plain text with JSON extraction,
and remembers per base URL what worked. An answer that does not parse gets
one repair follow-up (the parse error); an answer that does not validate
(a candidate without a script, bad step counts, duplicates) gets up to
``max_followups`` follow-ups with the validation error; then the request
fails with ``InvalidAnswerError`` keeping the raw answers.

One retry layer: the client is built with ``max_retries=0`` and tenacity
retries transient errors (timeouts, connection errors, 408/409/429, 5xx) with
exponential backoff and jitter, honouring Retry-After; permanent errors
(401, 403, 404, 400 other than an unsupported response format, a 429 for an
exhausted quota) fail at once with ``LLMRequestError``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import openai
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from actalign.keys import stage_key
from actalign.llm.errors import InvalidAnswerError, LLMRequestError, ScriptGenerationError
from actalign.llm.prompts import DEFAULT_TEMPLATE, PromptTemplate, format_candidates, load_template
from actalign.llm.ratelimit import RequestLimits, shared_limits
from actalign.llm.results import GeneratedScript, ScriptRequest
from actalign.llm.settings import LOCAL_PLACEHOLDER_KEY, LLMSettings
from actalign.llm.validate import AnswerParseError, AnswerValidationError, parse_json_answer, validate_answer
from actalign.stages import SCRIPTS

log = logging.getLogger("actalign.llm")

SCRIPT_STAGE = "llm_script"  # the keys of LLM scripts; their version is the scripts stage's (actalign.stages.SCRIPTS)
FORMATS = ("json_schema", "json_object", "text")  # best first

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["scripts"],
    "properties": {
        "scripts": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["index", "action", "steps"],
                "properties": {
                    "index": {"type": "integer", "description": "the candidate's number in the list, from 1"},
                    "action": {"type": "string", "description": "the candidate's name, copied exactly"},
                    "steps": {"type": "array", "items": {"type": "string"}, "description": "sub-action steps in chronological order"},
                },
            },
        }
    },
}

_FORMAT_MEMORY: dict[str, str] = {}  # base URL -> the best response format known to work there (per process)
_FORMAT_LOCK = threading.Lock()


@dataclass
class GenerationBatch:
    """Results of many requests: scripts by request key and action, failures by request key."""

    scripts: dict[str, dict[str, GeneratedScript]] = field(default_factory=dict)
    failures: dict[str, ScriptGenerationError] = field(default_factory=dict)


def question_actions(actions: Iterable[str]) -> tuple[str, ...]:
    """A question's candidate set in its canonical order (sorted, duplicates dropped): the prompt order and the key."""
    return tuple(sorted(dict.fromkeys(actions), key=lambda action: (action.casefold(), action)))


class OpenAIScriptProvider:
    """Scripts from an OpenAI-compatible chat endpoint (see the module docstring)."""

    name = "openai"

    def __init__(self, settings: LLMSettings | None = None, prompt: str = DEFAULT_TEMPLATE) -> None:
        """``prompt``: the template (a shipped name or a .yaml path) of the kind of text it writes."""
        self.settings = settings or LLMSettings()
        self.template: PromptTemplate = load_template(prompt)
        self.base_url = self.settings.resolved_base_url()
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()
        self._limits: RequestLimits = shared_limits(
            self.base_url, self.settings.max_concurrency, self.settings.requests_per_minute
        )

    # --- identity -----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """What every script depends on besides its domain, action and candidate set. Never the key."""
        s = self.settings
        return {
            "provider": self.name,
            "model": s.model,
            "endpoint": s.endpoint(),
            "template": self.template.name,
            "template_hash": self.template.template_hash,
            "temperature": s.temperature,
            "seed": s.seed,
            "granularity": s.granularity,
        }

    def script_key(self, domain: str | None, action: str, candidates: Iterable[str] | None = None) -> str:
        """The key of one action's script; ``candidates`` (the question's set, order-free) for question requests.

        Granularity is implied by ``candidates``: None, or a single candidate, is a per-class request.
        """
        config = {k: v for k, v in self.config().items() if k != "granularity"}
        ordered = question_actions(candidates) if candidates is not None else ()
        subject = {"domain": domain, "action": action, "candidates": list(ordered) if len(ordered) > 1 else None}
        return stage_key(SCRIPT_STAGE, SCRIPTS.version, {**config, **subject})

    def requests_for(self, groups: Iterable[tuple[str | None, Sequence[str]]]) -> list[ScriptRequest]:
        """The requests that script ``groups`` = (domain, candidate actions) per question, deduplicated by key."""
        requests: dict[str, ScriptRequest] = {}
        for domain, actions in groups:
            ordered = question_actions(actions)
            if self.settings.granularity == "question" and len(ordered) > 1:
                keys = tuple(self.script_key(domain, action, ordered) for action in ordered)
                key = stage_key(SCRIPT_STAGE + "_request", SCRIPTS.version, {"scripts": list(keys)})
                requests.setdefault(key, ScriptRequest(key, domain, ordered, keys, per_question=True))
            else:  # one request per action; a one-candidate question is the same request
                for action in ordered:
                    key = self.script_key(domain, action)
                    requests.setdefault(key, ScriptRequest(key, domain, (action,), (key,), per_question=False))
        return list(requests.values())

    # --- generation ---------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """InputError telling what to set when a remote endpoint has no key; call before any work."""
        self.settings.api_key()

    def generate(self, request: ScriptRequest) -> dict[str, GeneratedScript]:
        """Scripts for every action of ``request``; ScriptGenerationError (an ItemError) on final failure."""
        s, template = self.settings, self.template
        messages = template.render(request.domain, request.actions, per_question=request.per_question)
        raws: list[str] = []
        answered = prompt_tokens = completion_tokens = repairs = followups = 0

        def failure(cls: type[ScriptGenerationError], message: str, **extra: Any) -> ScriptGenerationError:
            return cls(
                self._scrub(message),
                request_key=request.key,
                actions=request.actions,
                raw_answer=raws[-1] if raws else None,
                raw_answers=tuple(raws),
                requests=answered,
                **extra,
            )

        while True:
            try:
                completion, used_format = self._complete(messages)
            except openai.APIStatusError as exc:
                raise failure(
                    LLMRequestError,
                    f"{request.key}: HTTP {exc.status_code} from {s.endpoint()}: {exc.message}",
                    status_code=exc.status_code,
                    transient=_is_transient(exc),
                ) from None
            except openai.APIConnectionError as exc:  # APITimeoutError included
                raise failure(
                    LLMRequestError, f"{request.key}: {type(exc).__name__} from {s.endpoint()} after {s.max_attempts} attempts: {exc}", transient=True
                ) from None
            except openai.OpenAIError as exc:
                raise failure(LLMRequestError, f"{request.key}: {type(exc).__name__}: {exc}") from None
            answered += 1
            if completion.usage is not None:
                prompt_tokens += completion.usage.prompt_tokens or 0
                completion_tokens += completion.usage.completion_tokens or 0
            choice = completion.choices[0] if completion.choices else None
            text = self._scrub(choice.message.content or "") if choice else ""
            raws.append(text)
            try:
                if choice is not None and not text and getattr(choice.message, "refusal", None):
                    raise AnswerParseError(f"the model refused: {self._scrub(choice.message.refusal)}")
                try:
                    data = parse_json_answer(text)
                except AnswerParseError as exc:
                    if choice is not None and choice.finish_reason == "length":
                        raise AnswerParseError(f"{exc}; the answer was cut off at the token limit, so keep the steps shorter") from None
                    raise
                steps = validate_answer(
                    data, request.actions, min_steps=template.min_steps, max_steps=template.max_steps, max_words=template.max_words
                )
            except AnswerParseError as exc:
                if repairs >= s.max_repairs:
                    raise failure(InvalidAnswerError, f"{request.key}: no parseable answer after {answered} request(s): {exc}") from None
                repairs += 1
                messages = [*messages, _assistant(text), _user(self._repair_message(str(exc), request))]
                log.info("request %s: unparseable answer, asking again (%s)", request.key, exc)
                continue
            except AnswerValidationError as exc:
                if followups >= s.max_followups:
                    raise failure(InvalidAnswerError, f"{request.key}: invalid answer after {answered} request(s): {exc}") from None
                followups += 1
                messages = [*messages, _assistant(text), _user(self._validation_message(str(exc), request))]
                log.info("request %s: invalid answer, asking again (%s)", request.key, exc)
                continue
            break

        log.info(
            "request %s: %d script(s), %d request(s), %d+%d tokens, format %s",
            request.key, len(request.actions), answered, prompt_tokens, completion_tokens, used_format,
        )
        return {
            action: GeneratedScript(
                key=script_key,
                domain=request.domain,
                action=action,
                steps=action_steps,
                provider=self.name,
                model=s.model,
                response_model=completion.model or s.model,
                template=template.name,
                template_version=template.version,
                template_hash=template.template_hash,
                request_key=request.key,
                response_format=used_format,
                raw_response=text,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                requests=answered,
            )
            for action, script_key, action_steps in zip(request.actions, request.script_keys, steps)
        }

    def generate_many(self, requests: Sequence[ScriptRequest], max_workers: int | None = None) -> GenerationBatch:
        """Run requests on a thread pool (the shared limits still apply); a failed request fails alone."""
        self.check_credentials()
        batch = GenerationBatch()

        def run(request: ScriptRequest) -> None:
            try:
                batch.scripts[request.key] = self.generate(request)
            except ScriptGenerationError as exc:
                batch.failures[request.key] = exc

        with ThreadPoolExecutor(max_workers=max_workers or self.settings.max_concurrency) as pool:
            list(pool.map(run, requests))
        return batch

    # --- HTTP ---------------------------------------------------------------------------------

    def _client_(self) -> openai.OpenAI:
        with self._client_lock:
            if self._client is None:
                s, key = self.settings, self.settings.api_key()
                common = {"api_key": key, "max_retries": 0, "timeout": s.timeout}  # one retry layer: ours
                if s.api == "azure":
                    self._client = openai.AzureOpenAI(azure_endpoint=self.base_url, api_version=s.azure_api_version, **common)
                else:
                    self._client = openai.OpenAI(base_url=self.base_url, **common)
            return self._client

    def _format(self) -> str:
        if self.settings.response_format != "auto":
            return self.settings.response_format
        with _FORMAT_LOCK:
            return _FORMAT_MEMORY.get(self.base_url, FORMATS[0])

    def _complete(self, messages: list[dict[str, str]]) -> tuple[Any, str]:
        """One answered request (retries inside), falling back through the response formats."""
        while True:
            fmt = self._format()
            try:
                completion = self._send(messages, fmt)
            except openai.APIStatusError as exc:
                if self.settings.response_format == "auto" and fmt != FORMATS[-1] and _rejects_format(exc):
                    fallback = FORMATS[FORMATS.index(fmt) + 1]
                    with _FORMAT_LOCK:
                        if FORMATS.index(_FORMAT_MEMORY.get(self.base_url, FORMATS[0])) < FORMATS.index(fallback):
                            _FORMAT_MEMORY[self.base_url] = fallback
                    log.warning("%s rejected response_format %s (HTTP %s); using %s", self.settings.endpoint(), fmt, exc.status_code, fallback)
                    continue
                raise
            if self.settings.response_format == "auto":
                with _FORMAT_LOCK:
                    _FORMAT_MEMORY.setdefault(self.base_url, fmt)
            return completion, fmt

    def _send(self, messages: list[dict[str, str]], fmt: str) -> Any:
        s = self.settings
        kwargs: dict[str, Any] = {"model": s.model, "messages": messages, "temperature": s.temperature}
        if s.seed is not None:
            kwargs["seed"] = s.seed
        if s.max_tokens is not None:
            kwargs["max_tokens"] = s.max_tokens
        if fmt == "json_schema":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "action_scripts", "strict": True, "schema": ANSWER_SCHEMA}}
        elif fmt == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        client = self._client_()
        backoff = wait_exponential_jitter(multiplier=s.backoff_initial, max=s.backoff_max, jitter=s.backoff_initial)

        def wait(state: RetryCallState) -> float:
            after = _retry_after(state.outcome.exception() if state.outcome else None)
            return min(after, s.max_retry_after) if after is not None else backoff(state)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            status = getattr(exc, "status_code", None)
            log.warning(
                "%s: %s%s, attempt %d of %d, retrying in %.2f s",
                s.endpoint(), type(exc).__name__, f" (HTTP {status})" if status else "",
                state.attempt_number, s.max_attempts, state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = Retrying(
            stop=stop_after_attempt(s.max_attempts),
            wait=wait,
            retry=retry_if_exception(_is_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                with self._limits.request():
                    completion = client.chat.completions.create(**kwargs)
        return completion

    # --- messages and secrets -----------------------------------------------------------------

    def _repair_message(self, error: str, request: ScriptRequest) -> str:
        return (
            f"Your answer could not be parsed: {error}. Reply again with only the JSON object described above, "
            f"with a script for each of the {len(request.actions)} candidate(s), and nothing else."
        )

    def _validation_message(self, error: str, request: ScriptRequest) -> str:
        return (
            f"Your answer is not valid: {error}. Reply again with the complete JSON object, with one script "
            f"for each of the {len(request.actions)} candidate(s), fixing these problems. Keep each candidate's "
            f"number as \"index\" and copy its name exactly as \"action\". The candidates are:\n"
            f"{format_candidates(request.actions)}"
        )

    def _scrub(self, text: str) -> str:
        """Remove the API key from any text that may be stored or shown (a server may echo it)."""
        secret = os.environ.get(self.settings.key_env(), "").strip()
        if len(secret) >= 6 and secret != LOCAL_PLACEHOLDER_KEY:
            text = text.replace(secret, "[redacted]")
        return text

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the client (it holds the key) or the locks; they are rebuilt on first use."""
        state = dict(self.__dict__)
        for name in ("_client", "_client_lock", "_limits"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client, self._client_lock = None, threading.Lock()
        self._limits = shared_limits(self.base_url, self.settings.max_concurrency, self.settings.requests_per_minute)

    def __repr__(self) -> str:
        return f"OpenAIScriptProvider(model={self.settings.model!r}, endpoint={self.settings.endpoint()!r}, template={self.template.label!r})"


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text or "(empty answer)"}


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying: timeouts, connection errors, 408/409/429 (not an exhausted quota), 5xx."""
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
        return True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return exc.code != "insufficient_quota"
        return exc.status_code in (408, 409) or exc.status_code >= 500
    return False


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date), if any."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    try:
        if headers.get("retry-after-ms"):
            return max(float(headers["retry-after-ms"]) / 1000, 0.0)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


def _rejects_format(exc: openai.APIStatusError) -> bool:
    """A 400/422 that names the response format: the server does not support it (not a permanent error)."""
    if exc.status_code not in (400, 422):
        return False
    if exc.param == "response_format":
        return True
    text = f"{exc.message} {json.dumps(exc.body, default=str)}".casefold()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "structured output", "guided_json"))
