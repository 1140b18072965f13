"""Chat backend for any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

The original Dysen code calls ``openai.ChatCompletion`` with exponential backoff (dysen_spec.md §2);
peers exit after a fixed number of failed calls (peers.md §3). Here the official ``openai`` SDK does
the HTTP, with its own retries switched off so that this class owns the policy and can count it:

* 429, 5xx, timeouts and connection errors are retried up to ``max_retries`` times, waiting
  ``uniform(0, min(backoff_max_s, backoff_base_s * 2**retry))`` ("full jitter"), or the server's
  ``Retry-After`` when it sends one (never longer than ``backoff_max_s``);
* any other 4xx fails at once with the server's own message;
* with a ``json_schema``, the request asks for structured output; in ``"auto"`` mode a server that
  rejects ``response_format`` is asked again in plain text, and this backend stops asking it;
* ``timeout_s`` is a deadline per request, not per read: the body is streamed and the request is given up
  (as a timeout) once the deadline has passed, so a server dripping a byte a second cannot hold it (issue 22);
* a 200 answer that is not a chat completion with text (HTML, broken JSON, a 5,000-digit integer, more than
  ``MAX_RESPONSE_BYTES``) raises ``UnusableAnswerError``, which the planner repairs, then falls back from.

The API key is read from the environment when the first request is made and lives only inside the
SDK client: it never appears in reprs, logs or error messages (server text goes through ``redact``), and SDK
exceptions (which hold the request and its headers) are not chained to the ``LLMError``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from dysen.planner.backends.base import (
    PAPER_SAMPLING,
    PLAN_DEADLINE,
    Completion,
    LLMError,
    LLMSampling,
    Messages,
    UnusableAnswerError,
    message_dicts,
)
from dysen.planner.backends.redact import redact

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

StructuredOutput = Literal["auto", "on", "off"]
_PLACEHOLDER_KEY = "no-key-needed"
"""Sent to local servers (vLLM, Ollama, llama.cpp) when no key is set: they accept any key."""
MAX_RESPONSE_BYTES = 8 * 2**20
"""The largest response body read (8 MiB); a planner answer is a few KB, so a larger one is unusable."""


@dataclass(frozen=True)
class BackendStats:
    """Running totals of one backend: calls made, retries and failures among them, tokens used."""

    calls: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class OpenAIBackend:
    """Chat completions through the official ``openai`` SDK, with counted retries and structured output."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        structured_output: StructuredOutput = "auto",
        name: str = "openai",
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if structured_output not in ("auto", "on", "off"):
            raise LLMError(f"structured_output must be 'auto', 'on' or 'off', got {structured_output!r}")
        if not (max_retries >= 0 and backoff_base_s >= 0 and backoff_max_s >= 0 and 0 < timeout_s < math.inf):
            raise LLMError(
                "max_retries, backoff_base_s and backoff_max_s must be >= 0, and timeout_s a finite number > 0; got "
                f"{max_retries}, {backoff_base_s}, {backoff_max_s} and {timeout_s}"
            )
        self.name = name
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.structured_output: StructuredOutput = structured_output
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._structured_supported = True
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()
        self._stats = BackendStats()

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
            f"structured_output={self.structured_output!r})"
        )

    @property
    def stats(self) -> BackendStats:
        """Totals since this backend was made."""
        return self._stats

    def complete(
        self,
        messages: Messages,
        *,
        sampling: LLMSampling = PAPER_SAMPLING,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Send one chat request, retrying transient failures; raise ``LLMError`` when it cannot be answered."""
        import openai

        payload = message_dicts(messages)
        client = self._get_client()
        self._count(calls=1)
        attempts = retries = 0
        while True:
            if _remaining_s() <= 0:
                raise self._budget_spent(attempts)
            attempts += 1
            schema = json_schema if self._wants_structured(json_schema) else None
            try:
                response = self._send(client, self._request(payload, sampling, schema))
            except openai.APIError as err:
                if _remaining_s() <= 0:
                    raise self._budget_spent(attempts) from None
                if schema is not None and self._falls_back(err):
                    continue
                if not _is_transient(err) or retries == self.max_retries:
                    self._count(failures=1)
                    tried = f" after {attempts} attempts" if attempts > 1 else ""
                    # from None: the SDK error holds the request (with its Authorization header) and raw bodies.
                    raise LLMError(f"{self._where()} failed{tried}: {self._describe(err)}") from None
                retries += 1
                self._count(retries=1)
                delay = self._delay(retries, err)
                log.warning(
                    "%s: %s; retry %d/%d in %.2f s",
                    self._where(),
                    self._describe(err),
                    retries,
                    self.max_retries,
                    delay,
                )
                self._sleep(max(0.0, min(delay, _remaining_s())))
                continue
            return self._completion(response, attempts)

    def _send(self, client: openai.OpenAI, request: dict[str, Any]) -> dict[str, Any]:
        """One request, its body streamed under a deadline of ``timeout_s`` (or the plan's, if sooner); the JSON
        object it answered."""
        import openai

        limit = min(self.timeout_s, _remaining_s())
        deadline = time.monotonic() + limit
        chunks, size = [], 0
        with client.chat.completions.with_streaming_response.create(**request, timeout=limit) as response:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise openai.APITimeoutError(request=response.http_request)
                if size > MAX_RESPONSE_BYTES:
                    raise self._unusable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            data = json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as err:  # not JSON, or integers beyond Python's digit limit
            raise self._unusable(f"the answer is not a JSON chat completion ({_short(str(err))})") from None
        if not isinstance(data, dict):
            raise self._unusable("the answer is not a JSON object")
        return data

    def _budget_spent(self, attempts: int) -> LLMError:
        self._count(failures=1)
        return LLMError(f"{self._where()}: the plan's time budget is spent ({attempts} attempt(s) made)")

    def _unusable(self, reason: str) -> UnusableAnswerError:
        self._count(failures=1)
        key = self._client.api_key if self._client is not None else None
        return UnusableAnswerError(f"{self._where()}: {redact(reason, secrets=(key,))}")

    def _get_client(self) -> openai.OpenAI:
        """Create the SDK client on first use, reading the API key from the environment."""
        with self._lock:
            if self._client is None:
                import openai

                key = os.environ.get(self.api_key_env)
                if not key and self.base_url is None:
                    raise LLMError(
                        f"No API key for the OpenAI API: set the environment variable {self.api_key_env}, "
                        "or pass base_url for a local server (vLLM, Ollama, llama.cpp), which needs no key."
                    )
                self._client = openai.OpenAI(
                    api_key=key or _PLACEHOLDER_KEY, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
                )
            return self._client

    def _request(
        self, messages: list[dict[str, str]], sampling: LLMSampling, json_schema: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for one attempt."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
            "frequency_penalty": sampling.frequency_penalty,
            "presence_penalty": sampling.presence_penalty,
        }
        if sampling.top_p is not None:
            request["top_p"] = sampling.top_p
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        if json_schema is not None:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", str(json_schema.get("title") or "response"))[:64]
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": dict(json_schema), "strict": False},
            }
        return request

    def _wants_structured(self, json_schema: Mapping[str, Any] | None) -> bool:
        return json_schema is not None and self.structured_output != "off" and self._structured_supported

    def _falls_back(self, err: openai.APIError) -> bool:
        """In "auto" mode, turn structured output off for good when the server rejects ``response_format``."""
        import openai

        if self.structured_output != "auto" or not isinstance(err, openai.BadRequestError):
            return False
        described = self._describe(err).lower()
        if "response_format" not in described and "json_schema" not in described:
            return False
        self._structured_supported = False
        log.warning("%s rejects response_format; asking in plain text from now on", self._where())
        return True

    def _delay(self, retry: int, err: openai.APIError) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): Retry-After, else full-jitter backoff."""
        import openai

        if isinstance(err, openai.APIStatusError):
            retry_after = _retry_after_s(err.response.headers)
            if retry_after is not None:
                return min(retry_after, self.backoff_max_s)
        return self._rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1)))

    def _completion(self, response: dict[str, Any], attempts: int) -> Completion:
        """Turn a chat-completion JSON object into a ``Completion``, counting its tokens."""
        choices = response.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        message = choice.get("message") if choice is not None else None
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            reason = choice.get("finish_reason") if choice is not None else "no choices"
            raise self._unusable(f"answered with no text (finish_reason: {_short(str(reason))})")
        usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
        prompt_tokens, completion_tokens = _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        model = response.get("model")
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            attempts=attempts,
            cached=False,
            model=model if isinstance(model, str) and model else self.model,
        )

    def _describe(self, err: openai.APIError) -> str:
        """The server's own words for a failure, with the API key blanked out should a server echo it."""
        import openai

        if isinstance(err, openai.APITimeoutError):
            text = f"no answer within {self.timeout_s:g} s"
        elif isinstance(err, openai.APIConnectionError):
            text = f"cannot connect ({err.__cause__ or err.message})"
        elif isinstance(err, openai.APIStatusError):
            body = err.body
            message = body.get("message") if isinstance(body, Mapping) else body
            text = f"HTTP {err.status_code}: {message or err.message}"
        else:
            text = err.message
        key = self._client.api_key if self._client is not None else None
        return redact(str(text), secrets=(key,))

    def _where(self) -> str:
        return f"LLM request to {self.base_url or 'the OpenAI API'} (model {self.model!r})"

    def _count(self, **deltas: int) -> None:
        with self._lock:
            self._stats = replace(self._stats, **{k: getattr(self._stats, k) + v for k, v in deltas.items()})


def _is_transient(err: Exception) -> bool:
    """Worth retrying: rate limits, server errors, timeouts and dropped connections."""
    import openai

    if isinstance(err, openai.APIConnectionError):
        return True
    return isinstance(err, openai.APIStatusError) and (err.status_code == 429 or err.status_code >= 500)


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait a server asks for in ``Retry-After-Ms`` or ``Retry-After`` (seconds only), if any."""
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(header)
        try:
            seconds = float(value) * scale if value is not None else None
        except ValueError:
            continue
        if seconds is not None and seconds >= 0:
            return seconds
    return None


def _remaining_s() -> float:
    """Seconds left of the plan's budget (``PLAN_DEADLINE``); infinite outside a plan."""
    deadline = PLAN_DEADLINE.get()
    return math.inf if deadline is None else deadline - time.monotonic()


def _tokens(usage: Mapping[str, Any], field: str) -> int:
    """A token count of ``usage``, 0 when missing or not a sane integer."""
    value = usage.get(field)
    return value if isinstance(value, int) and 0 <= value < 2**31 else 0


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
