"""One redaction for every text a server may echo back: API keys never reach logs, errors or output files.

Servers and proxies sometimes quote the request in their error text (``Authorization: Bearer sk-...``); the
OpenAI backend, the VLM annotator and anything else that repeats a server's words pass it through ``redact``
first. It lives here, below both ``dysen.planner`` and ``dysen.annotate`` (import layers), and needs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
"""What a secret is replaced with."""

_PATTERNS = (
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',;)}\]]+"),
    re.compile(r"(?i)(\b(?:x-)?api[_-]?key\b\s*[:=]\s*[\"']?)[^\s\"',;)}\]]+"),
    re.compile(r"(?i)(\bauthorization\b\s*[:=]\s*[\"']?)(?!bearer\s)[^\s\"',;)}\]]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-]{8,}"),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each of ``secrets`` and anything shaped like a key (``Bearer X``, ``api_key=X``, ``sk-...``)
    replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text
