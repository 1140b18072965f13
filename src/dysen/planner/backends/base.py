"""The one protocol every LLM backend speaks: chat messages in, text out.

Dysen (dysen_spec.md §2) calls an LLM three ways (action planning, per-SG imagination, global polish),
always as a chat with fixed sampling: the paper uses temperature 0 and at most 512 new tokens. The
planner only needs that, so a backend is anything with a ``name``, a ``model`` and
``complete(messages, sampling=..., json_schema=...) -> Completion``. Transports (OpenAI-compatible
HTTP, recorded replays) and wrappers (cache, recorder) all implement it, so they stack freely.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from dysen.errors import DysenError

Role = Literal["system", "user", "assistant"]
_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


class LLMError(DysenError):
    """An LLM backend could not produce an answer (server error, bad key, timeout, missing replay)."""


class UnusableAnswerError(LLMError):
    """The server answered, but not with a chat completion holding text (HTML, broken or oversized JSON).

    The planner treats it as an unusable answer: asked again within its repairs, then the fallback."""


PLAN_DEADLINE: ContextVar[float | None] = ContextVar("dysen_plan_deadline", default=None)
"""``time.monotonic()`` by which the plan being made must be done (set by the planner for its budget): HTTP
backends start no attempt after it and cut requests short at it. Each thread has its own."""

OPENAI_URL = "https://api.openai.com/v1"
"""The endpoint a backend with no ``base_url`` talks to."""


def normalize_endpoint(url: str | None) -> str:
    """One spelling per endpoint (cache keys, the demo's whitelist): scheme and host lower-case, default port and
    trailing slashes dropped; ``None`` or empty is OpenAI's API."""
    from urllib.parse import urlsplit, urlunsplit

    text = (url or "").strip().rstrip("/") or OPENAI_URL
    parts = urlsplit(text)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port is None or port == default else f"{host}:{port}"
    if ":" in host:  # IPv6
        netloc = f"[{host}]" if port is None or port == default else f"[{host}]:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn."""

    role: Role
    content: str


@dataclass(frozen=True)
class LLMSampling:
    """Decoding settings sent with every request; defaults are the paper's (temperature 0, 512 tokens)."""

    temperature: float = 0.0
    max_tokens: int = 512
    top_p: float | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise LLMError(f"LLMSampling.temperature must be >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise LLMError(f"LLMSampling.max_tokens must be >= 1, got {self.max_tokens}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LLMError(f"LLMSampling.top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class Completion:
    """One answer and what it cost.

    ``attempts`` counts the requests sent to a server (0 when none was asked); ``cached`` is true when the
    text came from a store (the response cache or a replay file) rather than from a model just now.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    cached: bool
    model: str


PAPER_SAMPLING = LLMSampling()
"""The sampling of the original Dysen code: greedy decoding, at most 512 new tokens."""

Messages = Sequence[Mapping[str, str]] | Sequence[ChatMessage]


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that answers a chat: an HTTP client, a replay file, or a wrapper around another backend."""

    name: str
    model: str

    def complete(
        self,
        messages: Messages,
        *,
        sampling: LLMSampling = PAPER_SAMPLING,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Answer ``messages``; with ``json_schema``, ask the server to hold the answer to that schema."""
        ...


def message_dicts(messages: Messages) -> list[dict[str, str]]:
    """Validate ``messages`` and return them as plain ``{"role", "content"}`` dicts, the wire format."""
    if isinstance(messages, (str, bytes)) or not messages:
        raise LLMError("messages must be a non-empty list of {'role': ..., 'content': ...} chat turns")
    out = []
    for i, message in enumerate(messages):
        if isinstance(message, ChatMessage):
            role, content = message.role, message.content
        elif isinstance(message, Mapping) and set(message) == {"role", "content"}:
            role, content = message["role"], message["content"]
        else:
            raise LLMError(f"message {i} must be a ChatMessage or a dict with exactly 'role' and 'content'")
        if role not in _ROLES or not isinstance(content, str):
            raise LLMError(f"message {i} needs a role in {sorted(_ROLES)} and text content, got role={role!r}")
        out.append({"role": role, "content": content})
    return out


def request_key(
    messages: Messages, sampling: LLMSampling | None, json_schema: Mapping[str, Any] | None, **context: str
) -> str:
    """sha256 of the canonical JSON of a request, plus ``context`` (backend, model, template version...)."""
    request = {
        "messages": message_dicts(messages),
        "sampling": asdict(sampling) if sampling is not None else None,
        "json_schema": json_schema,
        **context,
    }
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
