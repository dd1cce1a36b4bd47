"""A loopback OpenAI-compatible chat server for tests: real HTTP, real chat.completion JSON.

``LLMServer(responder)`` listens on 127.0.0.1 (a free port) and answers
``POST .../chat/completions`` (also Azure's deployment paths) by calling
``responder(call) -> Reply``. It records every call (path, headers, JSON
body), counts requests and measures how many were in flight at once, so tests
can check prompts, follow-ups, retries and where the API key went.
Helpers build the usual behaviours: a good answer for whatever candidates the
prompt lists, HTTP errors with headers, delays (a hang beyond the client's
timeout).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    """One request as the server saw it."""

    number: int  # 0-based, in arrival order
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    time: float  # time.monotonic() at arrival

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def first_user(self) -> str:
        return next(m["content"] for m in self.messages if m["role"] == "user")

    @property
    def last_user(self) -> str:
        return [m["content"] for m in self.messages if m["role"] == "user"][-1]

    @property
    def format(self) -> str:
        return (self.body.get("response_format") or {}).get("type", "text")


@dataclass
class Reply:
    """What to answer: an assistant message (status 200) or an error status with a body."""

    content: str | None = None
    status: int = 200
    error: dict[str, Any] | None = None  # the "error" object of an error body
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a hang when longer than the client's timeout)
    usage: tuple[int, int] = (120, 80)  # prompt, completion tokens


Responder = Callable[[Call], Reply]


class LLMServer:
    """``with LLMServer(responder) as server: OpenAI(base_url=server.base_url, ...)``."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.calls: list[Call] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.split("?")[0].endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}}, {})
                    return
                with server._lock:
                    call = Call(len(server.calls), self.path, dict(self.headers), body, time.monotonic())
                    server.calls.append(call)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.responder(call)
                    if reply.delay:
                        server._stop.wait(reply.delay)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                if reply.status != 200:
                    self._send(reply.status, {"error": reply.error or {"message": "error", "type": "server_error"}}, reply.headers)
                    return
                self._send(200, completion(body.get("model", "m"), reply.content, reply.usage), reply.headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def completion(model: str, content: str | None, usage: tuple[int, int] = (120, 80)) -> dict[str, Any]:
    """A real chat.completion object."""
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": f"{model}-served",
        "system_fingerprint": "fp_test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content, "refusal": None}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


# --- building answers ---------------------------------------------------------------------------


def candidates_of(call: Call) -> list[str]:
    """The candidates the prompt lists ("1. name" lines), or the single "Action: name"."""
    text = call.first_user
    listed = re.findall(r"^\s*\d+\.\s+(.+?)\s*$", text, flags=re.MULTILINE)
    if listed:
        return listed
    single = re.search(r"^Action:\s*(.+?)\s*$", text, flags=re.MULTILINE)
    return [single.group(1)] if single else []


def steps_for(action: str, count: int = 5) -> list[str]:
    """Distinct, deterministic steps naming the action."""
    return [f"{action.lower()} phase {number}" for number in range(1, count + 1)]


def answer(entries: list[dict[str, Any]]) -> str:
    return json.dumps({"scripts": entries})


def good_answer(call: Call, count: int = 5, name: Callable[[int, str], str] | None = None, index: bool = True) -> str:
    """A valid answer for the prompt's candidates; ``name(i, action)`` may rename them."""
    entries = []
    for number, action in enumerate(candidates_of(call), start=1):
        entry: dict[str, Any] = {"action": name(number, action) if name else action, "steps": steps_for(action, count)}
        if index:
            entry["index"] = number
        entries.append(entry)
    return answer(entries)


def error(status: int, message: str, *, param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return Reply(status=status, error={"message": message, "type": kind, "param": param, "code": code}, headers=headers or {})


def sequence(*replies: Reply | Callable[[Call], Reply]) -> Responder:
    """Answer the n-th call with the n-th reply (a Reply or a function of the call); the last one repeats."""

    def respond(call: Call) -> Reply:
        reply = replies[min(call.number, len(replies) - 1)]
        return reply(call) if callable(reply) else reply

    return respond


def good(count: int = 5, **kwargs: Any) -> Responder:
    return lambda call: Reply(good_answer(call, count, **kwargs))
