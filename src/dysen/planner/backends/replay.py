"""Recorded LLM answers: replay them without a server, or record what a live backend says.

Peers ship their LLM answers so that benchmarks run with no key (peers.md §3–§4); this is dysen's
version. A replay file is JSON Lines, one record per answer:

* ``{"key": ..., "text": ...}`` answers exactly one request: ``key`` is ``request_key(messages,
  sampling, json_schema)``, as ``RecordingBackend`` writes it (with the messages too, for reading);
* ``{"messages": [...], "text": ...}`` without a key answers those messages whatever the sampling,
  which is the easy way to write a file by hand.

Optional fields: ``model``, ``prompt_tokens``, ``completion_tokens``. When a request appears twice,
the later line wins, so re-recording into the same file updates it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dysen.planner.backends.base import (
    PAPER_SAMPLING,
    ChatBackend,
    Completion,
    LLMError,
    LLMSampling,
    Messages,
    message_dicts,
    request_key,
)


def _messages_id(messages: Messages) -> str:
    """Index of a key-less record: its messages as canonical JSON."""
    return json.dumps(message_dicts(messages), sort_keys=True, ensure_ascii=False)


class ReplayBackend:
    """Answers from a replay file; a request that was never recorded is an ``LLMError`` naming the file."""

    def __init__(self, path: str | os.PathLike[str], *, model: str = "replay", name: str = "replay") -> None:
        self.path = Path(path)
        self.name = name
        self.model = model
        self._by_key: dict[str, dict[str, Any]] = {}
        self._by_messages: dict[str, dict[str, Any]] = {}
        self._load()

    def __repr__(self) -> str:
        return f"ReplayBackend({str(self.path)!r}, model={self.model!r})"

    def __len__(self) -> int:
        return len(self._by_key) + len(self._by_messages)

    def complete(
        self,
        messages: Messages,
        *,
        sampling: LLMSampling = PAPER_SAMPLING,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """The recorded answer to this exact request, else to these messages under any sampling."""
        key = request_key(messages, sampling, json_schema)
        record = self._by_key.get(key) or self._by_messages.get(_messages_id(messages))
        if record is None:
            raise LLMError(
                f"no recorded answer in {self.path} for this request (key {key}); record it by running once "
                "with RecordingBackend around a live backend, or add a {'messages': ..., 'text': ...} line"
            )
        return Completion(
            text=record["text"],
            prompt_tokens=int(record.get("prompt_tokens", 0)),
            completion_tokens=int(record.get("completion_tokens", 0)),
            attempts=0,
            cached=True,
            model=str(record.get("model", self.model)),
        )

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise LLMError(f"cannot read replay file {self.path}: {err.strerror}") from err
        except UnicodeDecodeError:
            raise LLMError(f"cannot read replay file {self.path}: it is not UTF-8 text (a JSONL file is)") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise ValueError("a record needs a 'text' string")
                if "key" in record:
                    self._by_key[str(record["key"])] = record
                else:
                    self._by_messages[_messages_id(record["messages"])] = record
            except (ValueError, KeyError, LLMError) as err:
                raise LLMError(
                    f"{self.path}:{number}: not a replay record ({err}); expected a JSON object with 'text' and "
                    "either 'key' or 'messages'"
                ) from err


class RecordingBackend:
    """Passes requests to ``inner`` and appends each answer to a replay file, one write per line."""

    def __init__(self, inner: ChatBackend, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.path = Path(path)
        self.name = inner.name
        self.model = inner.model
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RecordingBackend({self.inner!r}, {str(self.path)!r})"

    def complete(
        self,
        messages: Messages,
        *,
        sampling: LLMSampling = PAPER_SAMPLING,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Ask ``inner``, then record its answer."""
        completion = self.inner.complete(messages, sampling=sampling, json_schema=json_schema)
        record = {
            "key": request_key(messages, sampling, json_schema),
            "model": completion.model,
            "messages": message_dicts(messages),
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }
        self._append((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        return completion

    def _append(self, line: bytes) -> None:
        """Append one whole line with a single O_APPEND write, so concurrent recorders never interleave."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, line)
            finally:
                os.close(fd)
        if written != len(line):
            raise LLMError(f"could not append a whole record to {self.path} (disk full?)")
