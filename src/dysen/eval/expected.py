"""Expected events of a prompt, and whether a planned DSG realises them (issue 23).

A hand-written prompt set (``tests/data/paraphrases.jsonl``) gives, per prompt, the events a careful reader expects:
shape, colour, canonical action and, for ``change_colour``, the target colour, in time order, with no timing. This
module decides whether a plan has them, for the planner tests and for the video evaluation of prompt sets
(``dysen.eval.prompt_set``), which share it.

The i-th expected event is compared with the i-th planned event in time order (start, then position in
``dsg.events``). A planned event realises an expected one when (1) its agent's name contains, as a word, the
expected shape, one of its synonyms (``SHAPE_SYNONYMS``) or the noun as written ("ball"); (2) its canonical action
(``event.motion.action``) is the expected one; (3) for ``change_colour``, its target is the expected colour or the
world colour that colour is drawn as (``dysen.world.colours``: "pink" is drawn red); and (4) with ``check_colour``,
when a colour is expected, the plan gives the agent that colour (or the world colour it maps to), in its name or as
an attribute in any step's graph. "The world" is the palette of the model being scored (``palette``; default the
default world's six colours): a model that also draws pink and cyan plans "pink" as pink and "white" as cyan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dysen.dsg.types import DynamicSceneGraph
from dysen.world import vocab
from dysen.world.colours import DEFAULT_PALETTE, nearest_world_colour
from dysen.world.vocab import SHAPE_SYNONYMS

__all__ = [
    "ACTIONS",
    "COLOUR_ALIASES",
    "SHAPES",
    "SHAPE_SYNONYMS",
    "ExpectedEvent",
    "PlannedEvent",
    "colour_word",
    "event_matches",
    "match_plan",
    "names_for",
    "planned_events",
    "world_colour",
    "words_of",
]

ACTIONS: tuple[str, ...] = tuple(a.name for a in vocab.ACTIONS)
"""The canonical actions an expected event may name (the Dynamic Shapes world's)."""
SHAPES: tuple[str, ...] = vocab.SHAPES
COLOUR_ALIASES: dict[str, str] = {"gray": "grey"}


@dataclass(frozen=True)
class ExpectedEvent:
    """One event a prompt asks for: who (shape, colour, the noun as written) does what (canonical action)."""

    shape: str
    action: str
    colour: str | None = None
    """The colour word of the prompt ("grey"), or None when the prompt names none."""
    target: str | None = None
    """The new colour of ``change_colour``; None otherwise."""
    noun: str | None = None
    """The noun the prompt uses when it is not the shape ("ball")."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpectedEvent:
        """From a record's event ``{"shape", "action", "colour", "target", "noun"}`` (validated by the reader)."""
        return cls(data["shape"], data["action"], data.get("colour"), data.get("target"), data.get("noun"))


@dataclass(frozen=True)
class PlannedEvent:
    """One event of a plan, as the matcher sees it."""

    index: int
    """Its position in ``dsg.events`` (the order of ``score_video``'s results)."""
    agent: str
    predicate: str
    start: int
    action: str | None
    """``event.motion.action`` (None when the event has no motion)."""
    targets: frozenset[str]
    """The event's target, lower case (a colour for ``change_colour``); empty when it has none."""
    colours: frozenset[str]
    """World colours the plan gives the agent: colour words of its name and colour attributes in any step."""


def colour_word(value: Any) -> str | None:
    """A colour word lower case, with aliases folded ("Gray" -> "grey"); None stays None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return COLOUR_ALIASES.get(text, text)


def world_colour(word: str | None, palette: tuple[str, ...] = DEFAULT_PALETTE) -> str | None:
    """The colour of ``palette`` a colour word is drawn as ("pink" -> "red" in the default world, "blue" -> "blue");
    an unknown word as is."""
    word = colour_word(word)
    if word is None:
        return None
    nearest = nearest_world_colour(word, palette)
    return nearest[0] if nearest is not None else word


def words_of(name: str) -> set[str]:
    """Lower-case words of an agent or object name, singular and as written ("red boxes" -> red, boxes, box)."""
    words = set(re.findall(r"[a-z]+", name.lower()))
    for w in list(words):
        if w.endswith("es"):
            words.add(w[:-2])
        if w.endswith("s"):
            words.add(w[:-1])
    return words


def names_for(expected: ExpectedEvent) -> set[str]:
    """Nouns that may name the object of one expected event: its shape, the shape's synonyms, its noun as written."""
    names = set(SHAPE_SYNONYMS.get(expected.shape, (expected.shape,)))
    if expected.noun:
        names.add(expected.noun.lower())
    return names


def _agent_colours(dsg: DynamicSceneGraph, agent: str, palette: tuple[str, ...]) -> frozenset[str]:
    """Colours of ``palette`` the plan gives ``agent``: in its name, and as its attributes in any step's graph."""
    found = {w for w in words_of(agent) if w in palette}
    for graph in dsg.graphs:
        found.update(a.attribute for a in graph.attributes if a.object == agent and a.attribute in palette)
    return frozenset(found)


def planned_events(dsg: DynamicSceneGraph, palette: tuple[str, ...] = DEFAULT_PALETTE) -> list[PlannedEvent]:
    """The events of a plan in time order: by (start, position in ``dsg.events``); agent colours of ``palette``."""
    order = sorted(range(len(dsg.events)), key=lambda i: (dsg.events[i].start, i))
    events = []
    for i in order:
        ev = dsg.events[i]
        action = ev.motion.action if ev.motion is not None else None
        targets = frozenset({colour_word(ev.target)} - {None})  # type: ignore[arg-type]
        colours = _agent_colours(dsg, ev.agent, palette)
        events.append(PlannedEvent(i, ev.agent, ev.predicate, ev.start, action, targets, colours))
    return events


def _colour_ok(expected_word: str | None, planned: frozenset[str], palette: tuple[str, ...]) -> bool:
    """Whether a planned colour set holds the expected colour word or the colour of ``palette`` it is drawn as."""
    word = colour_word(expected_word)
    return word in planned or world_colour(word, palette) in planned


def event_matches(
    expected: ExpectedEvent,
    planned: PlannedEvent | None,
    *,
    check_colour: bool = True,
    palette: tuple[str, ...] = DEFAULT_PALETTE,
) -> bool:
    """Whether one planned event realises one expected event (the rules are in the module's docstring); ``planned``
    from ``planned_events`` with the same ``palette``."""
    if planned is None:
        return False
    if not names_for(expected) & words_of(planned.agent):
        return False
    if planned.action != expected.action:
        return False
    if expected.action == "change_colour" and not _colour_ok(expected.target, planned.targets, palette):
        return False
    return not (
        check_colour and expected.colour is not None and not _colour_ok(expected.colour, planned.colours, palette)
    )


def match_plan(
    expected: Sequence[ExpectedEvent],
    dsg: DynamicSceneGraph,
    *,
    check_colour: bool = True,
    palette: tuple[str, ...] = DEFAULT_PALETTE,
) -> list[int | None]:
    """Per expected event, the index in ``dsg.events`` of the planned event that realises it, or None; colours are
    read in ``palette``, the colours of the model that made the plan.

    The i-th expected event is compared with the i-th planned event in time order; missing planned events realise
    nothing, and extra ones make no expected event wrong on their own.
    """
    planned = planned_events(dsg, palette)
    found: list[int | None] = []
    for i, exp in enumerate(expected):
        candidate = planned[i] if i < len(planned) else None
        matches = event_matches(exp, candidate, check_colour=check_colour, palette=palette)
        found.append(candidate.index if matches else None)
    return found
