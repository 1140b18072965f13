"""Dysen, the LLM dynamic scene manager (dysen_spec.md §2): turns a prompt into a dynamic scene graph.

This package is light to import (no torch, no ``openai``): the backends load their clients when first
used. What exists so far is the transport layer: chat backends and the persistent response cache.
"""

from dysen.planner.backends import ChatBackend, ChatMessage, Completion, LLMError, Sampling
from dysen.planner.cache import CachedBackend, CacheError, ResponseCache

__all__ = [
    "CacheError",
    "CachedBackend",
    "ChatBackend",
    "ChatMessage",
    "Completion",
    "LLMError",
    "ResponseCache",
    "Sampling",
]
