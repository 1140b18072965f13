"""Frozen pretrained text encoders, loaded lazily: the bundled MiniLM/BERT and CLIP's text tower.

A low package (it imports neither the planner nor the networks): ``minilm`` finds and loads the bundled
all-MiniLM-L6-v2 for the planner's sentence embeddings and the video model's text encoder alike; ``bert``
runs a plain BERT without importing transformers; ``text`` holds the ``TextEncoder`` protocol and its
MiniLM and CLIP implementations. Importing this package loads no torch; the names below import their
module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dysen.encoders.text import CLIPTextEncoder, MiniLMTextEncoder, TextEncoder, TextEncoderError

__all__ = ["CLIPTextEncoder", "MiniLMTextEncoder", "TextEncoder", "TextEncoderError"]


def __getattr__(name: str) -> Any:
    """Import ``dysen.encoders.text`` (torch) only when one of its names is asked for."""
    if name in __all__:
        from dysen.encoders import text

        return getattr(text, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
