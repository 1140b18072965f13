"""LLM backends behind one protocol (``base.ChatBackend``): OpenAI-compatible HTTP and recorded replays.

``openai_compat`` imports the ``openai`` SDK only when a request is made, so importing this package is
cheap and works where the SDK is not installed.
"""

from dysen.planner.backends.base import PAPER_SAMPLING, ChatBackend, ChatMessage, Completion, LLMError, Sampling
from dysen.planner.backends.openai_compat import BackendStats, OpenAIBackend
from dysen.planner.backends.replay import RecordingBackend, ReplayBackend

__all__ = [
    "PAPER_SAMPLING",
    "BackendStats",
    "ChatBackend",
    "ChatMessage",
    "Completion",
    "LLMError",
    "OpenAIBackend",
    "RecordingBackend",
    "ReplayBackend",
    "Sampling",
]
