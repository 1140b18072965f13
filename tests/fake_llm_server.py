"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions API from a script.

Tests of LLM backends talk to it instead of the internet (DESIGN.md §6). It answers
``POST /v1/chat/completions`` with the next scripted ``Reply`` (a status, the answer or error text,
an optional delay and headers), records every request it gets, and stops cleanly even while a slow
reply is still waiting. A request beyond the script gets HTTP 418, which no backend retries, so an
unexpected extra call fails the test at once.

It also misbehaves on request (the abuse tests, issue 22): a raw ``body`` sent as is (not JSON, huge
integers), a body dripped one byte every ``drip_s`` seconds, and an error that echoes the request's
``Authorization`` header back. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: for status 200 ``text`` is the assistant's message, otherwise the error message."""

    text: str = "ok"
    status: int = 200
    delay_s: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    prompt_tokens: int = 11
    completion_tokens: int = 7
    body: bytes | None = None
    """Sent verbatim instead of the JSON built from ``text`` (HTTP 200 with HTML, 5,000-digit integers...)."""
    drip_s: float = 0.0
    """When > 0, the body goes out one byte every ``drip_s`` seconds (a server that never times out per read)."""
    echo_auth: bool = False
    """Append the request's ``Authorization`` header to the error message, as careless proxies do."""


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received: path, headers (lower-case names) and the JSON body."""

    path: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]


def _response_body(reply: Reply, request: Mapping[str, Any]) -> dict[str, Any]:
    if reply.status != 200:
        return {"error": {"message": reply.text, "type": "fake_error", "param": None, "code": None}}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "fake-model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


class FakeLLMServer:
    """Scripted chat-completions server; use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque(replies)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="fake-llm-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give an OpenAI client."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def push(self, *replies: Reply) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(replies)

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake any delayed reply, stop serving and close the socket."""
        self._stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
        return Reply(status=418, text="fake server: no scripted reply left for this request")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path != CHAT_PATH:
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode(), {})
                    return
                reply = server._next(RecordedRequest(self.path, headers, body))
                if reply.delay_s and server._stopping.wait(reply.delay_s):
                    return
                if reply.echo_auth:
                    echoed = f" (you sent Authorization: {headers.get('authorization')})"
                    reply = replace(reply, text=reply.text + echoed)
                data = reply.body if reply.body is not None else json.dumps(_response_body(reply, body)).encode()
                self._send(reply.status, data, reply.headers, reply.drip_s)

            def _send(self, status: int, data: bytes, headers: Mapping[str, str], drip_s: float = 0.0) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if drip_s <= 0:
                        self.wfile.write(data)
                    for i in range(len(data) if drip_s > 0 else 0):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        if server._stopping.wait(drip_s):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test); nothing left to tell it

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
