"""Final failures of one LLM request. Each fails the question (or class) it covered, not the run.

Messages and raw answers are scrubbed of the API key before they get here.
"""

from __future__ import annotations

from actalign.errors import ItemError


class ScriptGenerationError(ItemError):
    """No valid scripts for a request; ``raw_answer`` keeps the model's last answer (None if there was none)."""

    def __init__(
        self,
        message: str,
        *,
        request_key: str,
        actions: tuple[str, ...] = (),
        raw_answer: str | None = None,
        raw_answers: tuple[str, ...] = (),
        requests: int = 0,
    ) -> None:
        super().__init__(message)
        self.request_key = request_key
        self.actions = actions
        self.raw_answer = raw_answer
        self.raw_answers = raw_answers  # every answer of the conversation, first to last
        self.requests = requests  # answered requests (billed), follow-ups included


class InvalidAnswerError(ScriptGenerationError):
    """The model's answers stayed unparseable or invalid after the follow-ups."""


class LLMRequestError(ScriptGenerationError):
    """The endpoint failed: a permanent HTTP error (401, 404, 400, ...) or transient errors beyond the retries."""

    def __init__(self, message: str, *, status_code: int | None = None, transient: bool = False, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code
        self.transient = transient
