"""The run configuration without secrets, as the report and ``results.json`` show it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_NAMES = re.compile(r"(api_?key|token|secret|password|cookie|proxy|authorization)", re.IGNORECASE)


def redact(value: Any, name: str = "") -> Any:
    """The configuration without secrets: values of secret-looking keys, and URL credentials and queries."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    if _SECRET_NAMES.search(name) and value not in (None, "", False) and not name.endswith("_env"):
        return "[redacted]"
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.username or parts.password or parts.query:
            host = parts.hostname or ""
            netloc = host + (f":{parts.port}" if parts.port else "")
            return urlunsplit((parts.scheme, netloc, parts.path, "[redacted]" if parts.query else "", ""))
    return value
