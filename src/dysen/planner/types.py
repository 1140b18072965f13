"""The planner's seams: what a planner is, what a demonstration is, and what picks demonstrations.

Dysen-VDM §3 (dysen_spec.md §2). Every planner (the LLM-driven ``DysenPlanner``, the rule-based
fallback, a replay) turns a prompt into a ``DynamicSceneGraph``; the LLM planner learns in context
from ``Demonstration``s that a ``DemoSelector`` picks (by embedding similarity, at random, or by the
RL-trained policy of §3.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dysen.dsg import DynamicSceneGraph


@dataclass(frozen=True)
class Demonstration:
    """One in-context example: a caption and its gold DSG (events, and the enriched graph of every step).

    The raw Step II graphs the prompts also show are derived, ``events_to_dsg(dsg.events).graphs``.
    """

    id: str
    caption: str
    dsg: DynamicSceneGraph


@runtime_checkable
class Planner(Protocol):
    """Anything that plans a prompt into a dynamic scene graph."""

    def plan(self, prompt: str, demonstrations: Sequence[Demonstration] | None = None) -> DynamicSceneGraph:
        """The DSG of ``prompt``; ``demonstrations`` overrides the planner's own choice of examples."""
        ...


@runtime_checkable
class DemoSelector(Protocol):
    """Picks the ``k`` demonstrations to show the LLM for ``prompt``, most useful last (nearest the query)."""

    def select(self, prompt: str, k: int) -> list[Demonstration]: ...
