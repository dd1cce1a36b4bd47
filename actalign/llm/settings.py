"""Settings of the LLM script provider, and where its endpoint and key come from.

The API key is read from the environment when the client is built
(``OPENAI_API_KEY``, or ``AZURE_OPENAI_API_KEY`` for Azure, or the variable
named by ``ACTALIGN_LLM_API_KEY_ENV``). It is never a setting, so it never reaches a key,
a run record, a log line, a stored answer or an error message. Neither is the
name of its variable: a configuration file or a deployment's parameters could
otherwise send any variable (``AWS_SECRET_ACCESS_KEY``) as a bearer token to
their ``base_url``; only the environment names it, and only ``*_API_KEY`` or
``*_TOKEN``. For the same reason ``base_url`` holds no credentials or query.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actalign.errors import InputError

DEFAULT_LLM_MODEL = "gpt-4o-2024-08-06"  # a dated snapshot: "gpt-4o" moves under you; the paper used GPT-4o
OPENAI_BASE_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "no-key"  # sent to local servers that need none; the client refuses an empty key
KEY_ENV_VARIABLE = "ACTALIGN_LLM_API_KEY_ENV"  # names another variable holding the key
_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:_API_KEY|_TOKEN)")


class LLMSettings(BaseModel):
    """Everything the LLM provider's requests depend on (besides the classes), and how to send them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(DEFAULT_LLM_MODEL, min_length=1, description="model (a dated snapshot) or Azure deployment name")
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM) or http://localhost:11434/v1 (Ollama); default: the OpenAI API",
        # _http_url's rule for no credentials and no query, in the JSON schema: Prefect refuses such a deployment
        # parameter when a run is created (enforce_parameter_schema), before it stores the parameters.
        json_schema_extra={"pattern": "^[^/?#@]*//[^/?#@]*(/[^?#]*)?$"},
    )
    api: Literal["openai", "azure"] = Field("openai", description="openai (also any compatible server) or azure (base_url is the Azure endpoint)")
    azure_api_version: str = Field("2024-10-21", description="api-version for Azure OpenAI")
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

    @model_validator(mode="before")
    @classmethod
    def _no_key_env(cls, data: object) -> object:
        """Refuse the former setting ``api_key_env``: no configuration may choose which environment variable is sent."""
        if isinstance(data, dict) and "api_key_env" in data:
            if data["api_key_env"] is not None:
                raise ValueError(f"api_key_env cannot be set in a configuration or parameter; set {KEY_ENV_VARIABLE} in the environment instead")
            data = {name: value for name, value in data.items() if name != "api_key_env"}  # as older `actalign config` printed it
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """The URL is stored and printed, so credentials or a query in it are refused, and never echoed."""
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("base_url must be an http(s) URL such as http://localhost:8000/v1")
            if "@" in parts.netloc or parts.query or parts.fragment:
                raise ValueError(
                    "base_url must not hold credentials (user:password@), a query (?...) or a fragment: give the API key in the environment"
                    f" (OPENAI_API_KEY, AZURE_OPENAI_API_KEY for Azure, or a *_API_KEY or *_TOKEN variable named by {KEY_ENV_VARIABLE})"
                )
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
        """The variable holding the key: the one ACTALIGN_LLM_API_KEY_ENV names, else the API's default."""
        name = os.environ.get(KEY_ENV_VARIABLE, "").strip()
        if name and not _KEY_NAME.fullmatch(name):  # not echoed: it may be a key pasted by mistake
            raise InputError(f"{KEY_ENV_VARIABLE} must name an environment variable ending in _API_KEY or _TOKEN, e.g. TEAM_LLM_API_KEY")
        return name or ("AZURE_OPENAI_API_KEY" if self.api == "azure" else "OPENAI_API_KEY")

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
            f" (or name another *_API_KEY or *_TOKEN variable with {KEY_ENV_VARIABLE}),"
            " or point --llm-base-url at a local OpenAI-compatible server"
        )
