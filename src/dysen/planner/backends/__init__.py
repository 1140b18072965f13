"""LLM backends behind one protocol (``base.ChatBackend``): OpenAI-compatible HTTP, recorded replays, local HF models.

``openai_compat`` imports the ``openai`` SDK only when a request is made, and ``HFChatBackend`` (``hf_local``) is
exported lazily and imports torch and transformers only when it loads a model, so importing this package is
cheap and works where none of them is installed.
"""

from typing import TYPE_CHECKING, Any

from dysen.planner.backends.base import PAPER_SAMPLING, ChatBackend, ChatMessage, Completion, LLMError, LLMSampling
from dysen.planner.backends.openai_compat import BackendStats, OpenAIBackend
from dysen.planner.backends.replay import RecordingBackend, ReplayBackend

if TYPE_CHECKING:
    from dysen.planner.backends.hf_local import HFChatBackend

__all__ = [
    "PAPER_SAMPLING",
    "BackendStats",
    "ChatBackend",
    "ChatMessage",
    "Completion",
    "HFChatBackend",
    "LLMError",
    "OpenAIBackend",
    "RecordingBackend",
    "ReplayBackend",
    "LLMSampling",
]


def __getattr__(name: str) -> Any:
    """Import ``HFChatBackend`` on first access, keeping ``import dysen.planner.backends`` light."""
    if name == "HFChatBackend":
        from dysen.planner.backends.hf_local import HFChatBackend

        return HFChatBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
