"""Layout imagination: per-step boxes for a planned DSG, so that a layout-grounded UNet knows where things are.

The planner (an LLM or the rules) decides what happens and when; this step imagines where the objects stand
and how their actions move them, the way Dynamic Shapes stages its clips (``dysen.world.motion``): each
object gets a size (the DSG's, else one its grow/shrink allows, else a seeded draw), a start drawn uniformly
among those that keep it inside the frame and clear of the others at every frame, and the motion primitive of
each of its actions (moves, jumps, grows, shrinks, rotates, appears, disappears, turns), read from the
events' canonical motion (``Event.motion``, set by ``dysen.planner.motion`` where missing), never their words
("slides to the left" moves the box left). Objects whose noun is not a Dynamic Shapes shape are boxed as
circles (colour nodes, the targets of 'turns', are no objects); motions outside that vocabulary ('still',
'unknown') leave their object still, and so does a rotation of a circle (it shows nothing).
Every step is linear in the plan's objects and events but the check that shapes keep apart, which costs the pairs
shown together; a plan of many objects shows a progress bar.
The imagined scene (the visible objects' colour, size and spatial relations at each step) is merged into the
step graphs, as in gold DSGs. Numpy only; no torch.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from tqdm.auto import tqdm

from dysen.dsg.convert import align_steps_to_frames
from dysen.dsg.types import Box, DynamicSceneGraph
from dysen.planner.motion import with_event_motion
from dysen.planner.scene_layout import imagine_scene
from dysen.world import vocab
from dysen.world.config import DEFAULT_CONFIG, ShapesConfig
from dysen.world.geometry import SYMMETRY
from dysen.world.gold import box_at, scene_at
from dysen.world.motion import Track, place
from dysen.world.story import Shape, Story, StoryEvent

logger = logging.getLogger(__name__)

_ATTEMPTS = 10
"""Seeded layout draws (each ``place`` tries 20 starts) before the DSG is returned without boxes."""
_PROGRESS_OBJECTS = 32
"""A progress bar is shown for the draws when the plan has at least this many objects (each draw takes a while)."""
_NAMED = 5
"""Objects named in the warning when no layout fits; the others are counted."""


def imagine_layout(dsg: DynamicSceneGraph, seed: int = 0, config: ShapesConfig = DEFAULT_CONFIG) -> DynamicSceneGraph:
    """``dsg`` with boxes at every step and the imagined scene merged into its graphs (see the module docstring).

    A DSG that has boxes already is returned as it is (``layout_source`` 'given' where it was not recorded); one
    whose objects cannot all be kept in frame and apart (e.g. four large shapes that all move) is returned without
    boxes, with a warning. A plan with any object that is no Dynamic Shapes shape (a man, a dog) is laid out as an
    everyday scene instead (``dysen.planner.scene_layout``).
    """
    if dsg.boxes is not None:
        return dsg if dsg.layout_source is not None else dsg.model_copy(update={"layout_source": "given"})
    dsg = dsg.model_copy(update={"events": tuple(with_event_motion(e) for e in dsg.events)})  # motion, not words
    mentioned = [n for g in dsg.graphs for n in g.objects] + [e.agent for e in dsg.events]
    names = [name for name in dict.fromkeys(mentioned) if name not in vocab.PAINTS]  # not the colour of 'turns'
    if not names:
        return dsg
    if not all(is_shape(name) for name in names):
        return imagine_scene(dsg, seed)
    steps = dsg.num_steps
    staging = dataclasses.replace(config, num_steps=steps, num_frames=2 * steps, max_events=min(steps, 3))
    rng = np.random.default_rng(seed)
    said, changes = _said(dsg)
    shapes = tuple(_shape(name, said.get(name, []), changes.get(name, []), rng) for name in names)
    story = Story(shapes, tuple((event,) for event in _story_events(dsg, names, shapes)))
    tracks = None
    draws = tqdm(range(_ATTEMPTS), desc="imagining the layout", unit="draw", disable=len(names) < _PROGRESS_OBJECTS)
    for _ in draws:
        tracks = place(story, rng, staging)
        if tracks is not None:
            break
    draws.close()
    if tracks is None:
        more = f" and {len(names) - _NAMED} more" if len(names) > _NAMED else ""
        logger.warning(
            "no layout keeps all of %s%s in frame and apart; generating without boxes", ", ".join(names[:_NAMED]), more
        )
        return dsg
    return _with_scene(dsg, names, tracks, staging)


def is_shape(name: str) -> bool:
    """Whether an object is drawn as a Dynamic Shapes shape: its name holds a shape noun or a shape's synonym."""
    return any(word in vocab.SHAPE_OF_NOUN for word in name.lower().split())


def _noun(name: str) -> str:
    """The Dynamic Shapes shape a name is drawn as: its shape noun, or a circle for anything else."""
    nouns = [word for word in name.lower().split() if word in vocab.SHAPES]
    return nouns[-1] if nouns else "circle"


def _said(dsg: DynamicSceneGraph) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per object, its attributes over all the steps in order, and its grow / shrink predicates in event order."""
    said: dict[str, list[str]] = {}
    for graph in dsg.graphs:
        for attribute in graph.attributes:
            said.setdefault(attribute.object, []).append(attribute.attribute)
    changes: dict[str, list[str]] = {}
    for event in dsg.events:
        kind = event.motion.kind if event.motion is not None else None
        if kind in ("grow", "shrink"):
            changes.setdefault(event.agent, []).append(kind)
    return said, changes


def _shape(name: str, attributes: list[str], changes: list[str], rng: np.random.Generator) -> Shape:
    """The object's shape, first colour and starting size, from the DSG where it says (any colour the world can
    paint, pink and cyan too), else drawn (from the default world's six)."""
    said = attributes + name.lower().split()
    colour = next((c for c in said if c in vocab.PAINTS), None) or str(rng.choice(list(vocab.COLOURS)))
    size = next((s for s in said if s in vocab.SIZES), None)
    if changes:  # the size before its first grow / shrink is the only one that lets it show
        size = "small" if changes[0] == "grow" else "large"
    return Shape(_noun(name), colour, size or str(rng.choice(list(vocab.SIZES))))


def _story_events(dsg: DynamicSceneGraph, names: list[str], shapes: tuple[Shape, ...]) -> list[StoryEvent]:
    """The DSG's events with a Dynamic Shapes motion, in time order, with each agent's colour at its start."""
    colour = [shape.colour for shape in shapes]
    index = {name: agent for agent, name in enumerate(names)}
    found = []
    for event in sorted(dsg.events, key=lambda e: (e.start, e.end)):
        action = vocab.ACTIONS_BY_NAME.get(event.motion.action) if event.motion is not None else None
        if action is None or event.agent not in index:  # no motion primitive, or an agent named like a colour
            continue
        new_colour = event.target or next((w for w in event.predicate.split() if w in vocab.PAINTS), None)
        if action.name == "change_colour" and new_colour not in vocab.PAINTS:
            continue
        agent = index[event.agent]
        if action.name == "rotate" and shapes[agent].shape not in SYMMETRY:  # a circle's turn shows nothing
            continue
        target = new_colour if action.name == "change_colour" else event.target
        found.append(StoryEvent(agent, action.name, event.start, event.end, colour[agent], target))
        colour[agent] = new_colour if action.name == "change_colour" else colour[agent]
    return found


def _with_scene(
    dsg: DynamicSceneGraph, names: list[str], tracks: tuple[Track, ...], staging: ShapesConfig
) -> DynamicSceneGraph:
    """Boxes and the visible scene at each step's first frame, and boxes at the last frame (a keyframe for how
    the last actions land), named by the DSG's object names."""
    named = tuple(dataclasses.replace(track, name=name) for track, name in zip(tracks, names, strict=True))
    firsts = [first for first, _ in align_steps_to_frames(dsg.num_steps, staging.num_frames).frames_of_step]
    graphs, boxes = [], []
    for graph, frame in zip(dsg.graphs, firsts, strict=True):
        graphs.append(scene_at(named, frame, staging.relation_margin).merged(graph))
        boxes.append(_visible_boxes(named, frame))
    last = staging.num_frames - 1
    boxes.append(tuple(box for box in _visible_boxes(named, last) if box.object in graphs[-1].objects))
    source = "imagined-shapes"
    return DynamicSceneGraph(events=dsg.events, graphs=tuple(graphs), boxes=tuple(boxes), layout_source=source)


def _visible_boxes(tracks: tuple[Track, ...], frame: int) -> tuple[Box, ...]:
    return tuple(box_at(track, frame, _noun(track.name)) for track in tracks if track.alpha[frame] > 0)
