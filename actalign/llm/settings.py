"""Settings of the LLM script provider, and where its endpoint and key come from.

The API key is read from the environment when the client is built
(``OPENAI_API_KEY``, or ``AZURE_OPENAI_API_KEY`` for Azure, or the variable
named by ``api_key_env``). It is never a setting, so it never reaches a key,
a run record, a log line, a stored answer or an error message.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actalign.errors import InputError
from actalign.llm.prompts import DEFAULT_TEMPLATE

DEFAULT_LLM_MODEL = "gpt-4o-2024-08-06"  # a dated snapshot: "gpt-4o" moves under you; the paper used GPT-4o
OPENAI_BASE_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "no-key"  # sent to local servers that need none; the client refuses an empty key


class LLMSettings(BaseModel):
    """Everything the LLM provider's requests depend on (besides the classes), and how to send them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(DEFAULT_LLM_MODEL, min_length=1, description="model (a dated snapshot) or Azure deployment name")
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM) or http://localhost:11434/v1 (Ollama); default: the OpenAI API"
    )
    api: Literal["openai", "azure"] = Field("openai", description="openai (also any compatible server) or azure (base_url is the Azure endpoint)")
    azure_api_version: str = Field("2024-10-21", description="api-version for Azure OpenAI")
    api_key_env: str | None = Field(None, description="environment variable holding the API key; default OPENAI_API_KEY (azure: AZURE_OPENAI_API_KEY)")
    prompt: str = Field(DEFAULT_TEMPLATE, description="prompt template: context-rich, short-fixed, or a .yaml path")
    temperature: float = Field(0.2, ge=0, le=2, description="sampling temperature (0.2 was the paper's best)")
    seed: int | None = Field(1, description="sampling seed where the server supports it (best effort)")
    granularity: Literal["question", "class"] = Field("question", description="one request per question (all candidates) or per class")
    response_format: Literal["auto", "json_schema", "json_object", "text"] = Field(
        "auto", description="auto: json_schema, falling back to json_object then text when the server rejects it"
    )
    max_tokens: int | None = Field(None, ge=1, description="cap on answer tokens per request (not sent when unset)")
    timeout: float = Field(60.0, gt=0, description="seconds per HTTP request")
    max_attempts: int = Field(5, ge=1, description="HTTP attempts per request for transient errors (timeouts, 429, 5xx)")
    backoff_initial: float = Field(1.0, ge=0, description="first backoff in seconds (exponential with jitter)")
    backoff_max: float = Field(30.0, ge=0, description="cap of one backoff in seconds")
    max_retry_after: float = Field(120.0, ge=0, description="cap on a server's Retry-After in seconds")
    max_followups: int = Field(2, ge=0, description="follow-up messages with the validation error before a request fails")
    max_repairs: int = Field(1, ge=0, description="follow-up messages with the JSON parse error before a request fails")
    max_concurrency: int = Field(4, ge=1, description="requests in flight at once (per process and endpoint)")
    requests_per_minute: int | None = Field(60, ge=1, description="request rate cap (per process and endpoint); None: no cap")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"base_url must be an http(s) URL such as http://localhost:8000/v1, got {value!r}")
        return value

    def resolved_base_url(self) -> str:
        if self.api == "azure" and not self.base_url:
            raise InputError("Azure OpenAI needs its endpoint: set --llm-base-url https://<resource>.openai.azure.com")
        return (self.base_url or OPENAI_BASE_URL).rstrip("/")

    def endpoint(self) -> str:
        """``host[:port]`` of the endpoint: the only part of the URL that goes into keys (no credentials, no path)."""
        parts = urlsplit(self.resolved_base_url())
        host = (parts.hostname or "").lower()
        return f"{host}:{parts.port}" if parts.port else host

    def key_env(self) -> str:
        return self.api_key_env or ("AZURE_OPENAI_API_KEY" if self.api == "azure" else "OPENAI_API_KEY")

    def is_local(self) -> bool:
        """A loopback or private-network endpoint (a local vLLM/Ollama), where a key is optional."""
        host = urlsplit(self.resolved_base_url()).hostname or ""
        if host in ("localhost", "host.docker.internal") or host.endswith(".localhost"):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or address.is_private

    def api_key(self) -> str:
        """The key from the environment; InputError telling what to set when a remote endpoint has none."""
        key = os.environ.get(self.key_env(), "").strip()
        if key:
            return key
        if self.is_local():
            return LOCAL_PLACEHOLDER_KEY
        raise InputError(
            f"no API key for {self.endpoint()}: set the environment variable {self.key_env()}"
            + ("" if self.api_key_env else " (or name another one with --llm-api-key-env)")
            + ", or point --llm-base-url at a local OpenAI-compatible server"
        )
