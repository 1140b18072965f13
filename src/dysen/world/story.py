"""What happens in a Dynamic Shapes clip: its shapes, its events and their canonical timing.

A story is a list of *phases* that follow one another; each phase is a group of events by distinct
shapes that happen at the same time. Timing is canonical, so that a caption's order words fix every
span: the phases split the M steps as evenly as possible, earlier phases taking the extra steps
(M = 8: one phase [0, 8); two [0, 4), [4, 8); three [0, 3), [3, 6), [6, 8)), and every event of a
phase spans the whole phase.

Every event can be seen: a circle never rotates (``vocab.INVISIBLE_ACTIONS``); only small shapes grow
and only large ones shrink (the size name then switches); 'appears' is a shape's first event (it is
absent before) and 'disappears' its last (absent after); 'turns' picks a colour that no other shape
of the clip ever wears, so colours tell shapes apart at every frame; a shape never repeats its previous
action (two jumps in a row would merge into one long hop, two moves into one long slide). Outside the 'compositional'
split the (colour, shape, action) triples of ``vocab.HELD_OUT_TRIPLES`` are never drawn; a
compositional story is redrawn until it shows at least one of them. Colours come from
``ShapesConfig.colours`` (default: the six of ``vocab.COLOURS``, in their order, so the default world is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dysen.dsg.types import Event
from dysen.world import vocab
from dysen.world.config import ShapesConfig

STRUCTURES: dict[int, tuple[tuple[int, ...], ...]] = {
    # number of events: the possible phase layouts, as the number of simultaneous events per phase
    1: ((1,),),
    2: ((1, 1), (2,)),
    3: ((1, 1, 1), (2, 1), (1, 2), (3,)),
}


@dataclass(frozen=True)
class Shape:
    """One shape of a clip as it is at the first frame (or, for one that appears, when it appears)."""

    shape: str
    colour: str
    size: str


@dataclass(frozen=True)
class StoryEvent:
    """One action of one shape over a span of time steps."""

    agent: int
    """Index of the acting shape in ``Story.shapes``."""
    action: str
    """``vocab.Action.name``."""
    start: int
    end: int
    """Half-open span ``[start, end)`` in steps."""
    colour: str
    """The agent's colour when the event starts (the colour of the (colour, shape, action) triple)."""
    target: str | None = None
    """The new colour of 'change_colour'; None otherwise."""


@dataclass(frozen=True)
class Story:
    """Shapes and phases; the events of a phase share one span and have distinct agents."""

    shapes: tuple[Shape, ...]
    phases: tuple[tuple[StoryEvent, ...], ...]

    @property
    def events(self) -> tuple[StoryEvent, ...]:
        """All events, phase by phase (the order of the gold DSG)."""
        return tuple(e for phase in self.phases for e in phase)

    def events_of(self, agent: int) -> tuple[StoryEvent, ...]:
        """The events of one shape, in time order."""
        return tuple(e for e in self.events if e.agent == agent)

    def triples(self) -> set[tuple[str, str, str]]:
        """The (colour at start, shape, action) triples the story shows."""
        return {(e.colour, self.shapes[e.agent].shape, e.action) for e in self.events}

    def gold_events(self) -> tuple[Event, ...]:
        """The events as DSG ``Event``s: agent = shape noun, predicate = the action's canonical predicate."""
        return tuple(
            Event(
                agent=self.shapes[e.agent].shape,
                predicate=vocab.ACTIONS_BY_NAME[e.action].predicate,
                target=e.target,
                start=e.start,
                end=e.end,
            )
            for e in self.events
        )


def phase_spans(num_phases: int, num_steps: int) -> list[tuple[int, int]]:
    """Split ``num_steps`` steps into ``num_phases`` consecutive spans, earlier spans one step longer if uneven."""
    base, extra = divmod(num_steps, num_phases)
    spans, start = [], 0
    for phase in range(num_phases):
        end = start + base + (phase < extra)
        spans.append((start, end))
        start = end
    return spans


def sample_story(rng: np.random.Generator, config: ShapesConfig, compositional: bool) -> Story:
    """Draw one story; with ``compositional``, redraw until it shows a held-out triple."""
    while True:
        story = _draw(rng, config, allow_held_out=compositional)
        if not compositional or story.triples() & vocab.HELD_OUT_TRIPLES:
            return story


def _draw(rng: np.random.Generator, config: ShapesConfig, allow_held_out: bool) -> Story:
    """Draw the layout of phases, the shapes, who acts in each phase, then each action in time order."""
    num_events = int(rng.integers(1, config.max_events + 1))
    layouts = [s for s in STRUCTURES[num_events] if max(s) <= config.max_objects]
    layout = layouts[int(rng.integers(len(layouts)))]
    num_shapes = int(rng.integers(max(layout), config.max_objects + 1))
    names = rng.choice(len(vocab.SHAPES), size=num_shapes, replace=False)
    colours = rng.choice(len(config.colours), size=num_shapes, replace=False)
    sizes = rng.integers(len(vocab.SIZES), size=num_shapes)
    shapes = tuple(
        Shape(vocab.SHAPES[n], config.colours[c], list(vocab.SIZES)[s])
        for n, c, s in zip(names, colours, sizes, strict=True)
    )
    agents = [[int(a) for a in rng.choice(num_shapes, size=count, replace=False)] for count in layout]
    return Story(shapes, _assign_actions(rng, shapes, agents, config, allow_held_out))


def _assign_actions(
    rng: np.random.Generator,
    shapes: tuple[Shape, ...],
    agents: list[list[int]],
    config: ShapesConfig,
    allow_held_out: bool,
) -> tuple[tuple[StoryEvent, ...], ...]:
    """Pick every event's action in time order, tracking each shape's colour and size as they change; a new colour
    comes from the config's palette."""
    colour = [s.colour for s in shapes]
    size = [s.size for s in shapes]
    worn = set(colour)
    total = [sum(agent in phase for phase in agents) for agent in range(len(shapes))]
    done = [0] * len(shapes)
    previous: list[str | None] = [None] * len(shapes)
    phases = []
    for (start, end), phase_agents in zip(phase_spans(len(agents), config.num_steps), agents, strict=True):
        phase = []
        for agent in phase_agents:
            first, last = done[agent] == 0, done[agent] == total[agent] - 1
            options = [
                name
                for name in vocab.ACTIONS_BY_NAME
                if name != previous[agent]
                and _possible(name, shapes[agent].shape, size[agent], first, last, len(worn) < len(config.colours))
                and (allow_held_out or (colour[agent], shapes[agent].shape, name) not in vocab.HELD_OUT_TRIPLES)
            ]
            action = options[int(rng.integers(len(options)))]
            target = None
            if action == "change_colour":
                free = [c for c in config.colours if c not in worn]
                target = free[int(rng.integers(len(free)))]
                worn.add(target)
            phase.append(StoryEvent(agent, action, start, end, colour[agent], target))
            colour[agent] = target or colour[agent]
            size[agent] = {"grow": "large", "shrink": "small"}.get(action, size[agent])
            done[agent] += 1
            previous[agent] = action
        phases.append(tuple(phase))
    return tuple(phases)


def _possible(action: str, shape: str, size: str, first: bool, last: bool, colour_free: bool) -> bool:
    """Whether ``action`` would be visible for a shape in this state (see the module docstring); ``colour_free``:
    whether a palette colour is left that no shape of the clip wears."""
    if action in vocab.INVISIBLE_ACTIONS.get(shape, ()):
        return False
    rules = {
        "grow": size == "small",
        "shrink": size == "large",
        "appear": first,
        "disappear": last,
        "change_colour": colour_free,
    }
    return rules.get(action, True)
