"""Model-hub look-ups that fail fast: a hub id (not a local folder) on a machine without network stops at once
with one line naming the id and the config field that takes a local folder, instead of transformers' and
diffusers' retries (37 s before an error on such a machine; issue 22, item 14).

``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set: a hub id must already be in the local cache. Otherwise one
TCP connection to the hub (``HUB_PROBE_TIMEOUT_S``) tells whether it can be reached before anything is fetched.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from dysen.errors import DysenError

HUB_PROBE_TIMEOUT_S = 3.0
"""Seconds to wait for a TCP connection to the model hub before calling it unreachable."""

_TRUE = {"1", "on", "yes", "true"}


class HubUnavailableError(DysenError):
    """A model named by hub id is not cached locally and the hub cannot be reached (or is switched off)."""


def is_hub_id(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a hub repository ('org/name' or 'name') rather than a local path."""
    text = os.fspath(source)
    if Path(text).expanduser().exists() or text.startswith((".", "~", "/")) or "\\" in text:
        return False
    return text.count("/") <= 1 and bool(text.strip("/"))


def offline() -> bool:
    """Whether the hub is switched off for this process (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


def require_hub_source(source: str | os.PathLike[str], what: str, field: str, subfolder: str | None = None) -> None:
    """Raise ``HubUnavailableError`` at once when ``source`` is a hub id that is neither cached nor reachable;
    ``what`` names the model and ``field`` the config field (or flag) that takes a local folder instead."""
    if not is_hub_id(source) or _cached(os.fspath(source), subfolder):
        return
    reason = "HF_HUB_OFFLINE is set" if offline() else _unreachable()
    if reason:
        raise HubUnavailableError(
            f"{what} {os.fspath(source)!r} is a model-hub id, not a local folder, and it is not in the local cache "
            f"({reason}): download it where there is network (huggingface-cli download {os.fspath(source)}) and "
            f"set {field} to its folder"
        )


def _cached(repo: str, subfolder: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    name = f"{subfolder}/config.json" if subfolder else "config.json"
    try:
        return isinstance(try_to_load_from_cache(repo, name), str)
    except ValueError:  # not a valid repo id
        return False


@cache
def _unreachable() -> str:
    """Why the hub cannot be reached ('' when it can); asked once per process."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as err:
        return f"{host} cannot be reached: {err.strerror or err}"
    return ""
