"""Dysen, the LLM dynamic scene manager (dysen_spec.md §2): turns a prompt into a dynamic scene graph.

This package is light to import (no torch, no ``openai``): the backends load their clients when first
used. ``DysenPlanner`` runs the three steps over any ``ChatBackend`` (OpenAI-compatible servers, replays,
with a persistent cache); ``plan_many`` plans thousands of prompts with bounded concurrency.
"""

from dysen.planner.backends import ChatBackend, ChatMessage, Completion, LLMError, LLMSampling
from dysen.planner.batch import plan_many
from dysen.planner.cache import CachedBackend, CacheError, ResponseCache
from dysen.planner.dysen import DysenPlanner, PlanningError
from dysen.planner.types import Demonstration, DemoSelector, Planner

__all__ = [
    "CacheError",
    "CachedBackend",
    "ChatBackend",
    "ChatMessage",
    "Completion",
    "DemoSelector",
    "Demonstration",
    "DysenPlanner",
    "LLMError",
    "Planner",
    "PlanningError",
    "ResponseCache",
    "LLMSampling",
    "plan_many",
]
