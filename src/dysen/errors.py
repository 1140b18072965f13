"""The one error family of dysen: every expected failure says what was wrong and what to do."""

from __future__ import annotations


class DysenError(Exception):
    """Base class of every error dysen raises on purpose (bad input, missing files, bad LLM output)."""


class DSGError(DysenError, ValueError):
    """A dynamic scene graph, or text meant to describe one, is invalid."""


class VideoError(DysenError):
    """A video file is missing, corrupt, truncated, empty or not a video."""
