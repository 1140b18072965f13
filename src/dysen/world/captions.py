"""How a Dynamic Shapes story is said: paraphrased captions whose order words fix every event and span.

Grammar (so that a careful reader, or a rule-based parser, recovers the gold events exactly):

* a clause is ``<noun phrase> <verb phrase>``; the verb phrase is one of ``vocab.ACTION_PHRASES`` (with
  ``ShapesConfig.phrasing`` 'everyday', also of ``vocab.EVERYDAY_PHRASES``);
* a shape's first mention is "a <size> <colour> <shape>" with its initial size and colour; later
  mentions are "the <shape>" or "the <colour now> <shape>" (shapes in a clip are distinct);
* simultaneous events (one phase) are joined by ``GROUPS`` ("while", "as", "at the same time",
  "meanwhile"): they share one span; simultaneity binds tighter than sequence;
* phases follow each other through ``ORDERS`` ("then", "and then", "after that", "afterwards", "next",
  "first … then", "finally", "before", "after"). Only "Before B, A" and "B after A" state a later phase
  first; they join single events of different shapes, so a first mention is always a shape's first event;
* shapes that never act are named once in a context sentence ("There is …", "… stays still", "next to …").

Spans then follow from ``story.phase_spans``: n phases split the M steps evenly, earlier ones longer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dysen.world import vocab
from dysen.world.config import Phrasing
from dysen.world.story import Shape, Story, StoryEvent

GROUPS: dict[int, tuple[str, ...]] = {
    # number of simultaneous events: templates joining their clauses, in the order {0}, {1}, {2}
    1: ("{0}",),
    2: (
        "{0} while {1}",
        "{0} as {1}",
        "{0} and {1} at the same time",
        "{0}, and at the same time {1}",
        "{0}; meanwhile, {1}",
    ),
    3: ("{0}, {1} and {2} at the same time", "{0} while {1} and {2}"),
}


@dataclass(frozen=True)
class Order:
    """A template that puts phases in sequence; ``{i}`` is the text of phase i."""

    template: str
    singles: tuple[int, ...] = ()
    """Phases that must be a single event (the subordinate clauses of 'before' / 'after')."""
    reversed: bool = False
    """Whether the template names the ``singles`` phases against time order (their agents must differ)."""


ORDERS: dict[int, tuple[Order, ...]] = {
    1: (Order("{0}."),),
    2: (
        Order("{0}, then {1}."),
        Order("{0}, and then {1}."),
        Order("{0}. After that, {1}."),
        Order("{0}. Afterwards, {1}."),
        Order("{0}. Next, {1}."),
        Order("First, {0}. Then {1}."),
        Order("{0} before {1}.", (0, 1)),
        Order("After {0}, {1}.", (0,)),
        Order("Before {1}, {0}.", (0, 1), reversed=True),
        Order("{1} after {0}.", (0, 1), reversed=True),
    ),
    3: (
        Order("{0}, then {1}, and finally {2}."),
        Order("First, {0}. Then {1}. Finally, {2}."),
        Order("{0}. After that, {1}. Finally, {2}."),
        Order("{0}, then {1}, then {2}."),
        Order("{0}. Next, {1}. Afterwards, {2}."),
        Order("{0} before {1}, and finally {2}.", (0, 1)),
        Order("After {0}, {1}. Then {2}.", (0,)),
        Order("Before {1}, {0}. Finally, {2}.", (0, 1), reversed=True),
    ),
}

CONTEXT: tuple[tuple[str, str], ...] = (
    # (one idle shape, several idle shapes); {np}: their noun phrases, {main}: the caption so far
    ("There is {np}. {main}", "There are {np}. {main}"),
    ("{main} {np} stays still.", "{main} {np} stay still."),
    ("{main} {np} does not move.", "{main} {np} do not move."),
    ("{open}, next to {np}.", "{open}, next to {np}."),
)


def verb_phrases(action: str, phrasing: Phrasing = "templates") -> tuple[str, ...]:
    """The verb phrases a caption may use for ``action``: ``vocab.ACTION_PHRASES``, and with 'everyday' phrasing
    ``vocab.EVERYDAY_PHRASES`` after them (so the template phrases are drawn by the same numbers in both)."""
    if phrasing == "everyday":
        return vocab.ACTION_PHRASES[action] + vocab.EVERYDAY_PHRASES[action]
    return vocab.ACTION_PHRASES[action]


def compose_caption(story: Story, rng: np.random.Generator, phrasing: Phrasing = "templates") -> str:
    """The caption of ``story``: a randomly chosen paraphrase of exactly its events and shapes, its verb phrases
    from ``verb_phrases(action, phrasing)``."""
    orders = [o for o in ORDERS[len(story.phases)] if _fits(o, story)]
    order = orders[int(rng.integers(len(orders)))]
    mentioned: set[int] = set()
    texts: dict[int, str] = {}
    for index in _placeholders(order.template):  # textual order, which decides first mentions
        texts[index] = _phase_text(story, story.phases[index], mentioned, rng, phrasing)
    main = _capitalise(order.template.format(*(texts[i] for i in range(len(story.phases)))))
    idle = [shape for agent, shape in enumerate(story.shapes) if not story.events_of(agent)]
    return _with_context(main, idle, rng) if idle else main


def _fits(order: Order, story: Story) -> bool:
    """Whether ``order`` can say ``story``: single events where it needs them, distinct agents if it reverses."""
    phases = [story.phases[i] for i in order.singles]
    if any(len(phase) != 1 for phase in phases):
        return False
    return not order.reversed or len({phase[0].agent for phase in phases}) == len(phases)


def _placeholders(template: str) -> list[int]:
    """The phase indices of ``template`` in the order they are written."""
    return [int(i) for i in re.findall(r"\{(\d)\}", template)]


def _phase_text(
    story: Story, phase: tuple[StoryEvent, ...], mentioned: set[int], rng: np.random.Generator, phrasing: Phrasing
) -> str:
    """The clauses of one phase joined by a simultaneity template."""
    templates = GROUPS[len(phase)]
    clauses = [_clause(story, event, mentioned, rng, phrasing) for event in phase]
    return templates[int(rng.integers(len(templates)))].format(*clauses)


def _clause(story: Story, event: StoryEvent, mentioned: set[int], rng: np.random.Generator, phrasing: Phrasing) -> str:
    """'<noun phrase> <verb phrase>' for one event; the noun phrase depends on whether the shape was named."""
    shape = story.shapes[event.agent]
    if event.agent in mentioned:
        subject = _pick(rng, (f"the {shape.shape}", f"the {event.colour} {shape.shape}"))
    else:
        subject = _first_mention(shape, rng)
        mentioned.add(event.agent)
    verb = _pick(rng, verb_phrases(event.action, phrasing)).format(colour=event.target)
    return f"{subject} {verb}"


def _first_mention(shape: Shape, rng: np.random.Generator) -> str:
    """'a <size> <colour> <shape>' with a paraphrased size word."""
    return f"a {_pick(rng, vocab.SIZE_WORDS[shape.size])} {shape.colour} {shape.shape}"


def _with_context(main: str, idle: list[Shape], rng: np.random.Generator) -> str:
    """``main`` plus a sentence or phrase naming the shapes that never act."""
    np_list = " and ".join(_first_mention(shape, rng) for shape in idle)
    one, many = CONTEXT[int(rng.integers(len(CONTEXT)))]
    template = one if len(idle) == 1 else many
    return _capitalise(template.format(main=main, open=main[:-1], np=np_list))


def _capitalise(text: str) -> str:
    """Upper-case the first letter of every sentence."""
    return re.sub(r"(^|\. )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]
