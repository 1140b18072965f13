"""The gold dynamic scene graph of a clip and its boxes, read off the story and the placed tracks.

Step m's scene graph describes the step's first frame (``align_steps_to_frames``) plus what happens
during the step:

* objects: the shapes visible then (opacity > 0), named by their shape noun;
* attributes ``(shape, colour)`` and ``(shape, size)`` as shown then (a 'turns' switches colour at its
  window's middle frame; a grow/shrink switches size name when it ends);
* spatial relations ``(a, 'left of' | 'right of' | 'above' | 'below', b)`` for every ordered pair of
  visible shapes whose centres differ by more than ``relation_margin`` along that axis;
* action facts exactly as Step II makes them (``dysen.dsg.convert.events_to_dsg``): the attribute
  ``(agent, predicate)`` of each intransitive event active at m, the relation ``(agent, 'turns', colour)``
  of each active 'turns' (the colour then is an object node too).

Boxes: ``DynamicSceneGraph.boxes[m]`` holds the tight box of every visible shape at step m's first frame and
``boxes[M]`` those at the last frame; ``frame_boxes[t]`` the same at every frame t. Normalised to [0, 1]
(x right, y down), rounded to 1e-4, with each shape's clockwise turn (``Box.angle``, radians).
"""

from __future__ import annotations

from dysen.dsg.convert import align_steps_to_frames, events_to_dsg
from dysen.dsg.types import Box, DynamicSceneGraph, SceneGraph
from dysen.world.config import ShapesConfig
from dysen.world.geometry import bounds
from dysen.world.motion import Track
from dysen.world.story import Story


def gold_dsg(
    story: Story, tracks: tuple[Track, ...], boxes: tuple[tuple[Box, ...], ...], config: ShapesConfig
) -> DynamicSceneGraph:
    """Events, one scene graph per step (scene facts merged with Step II's action facts) and boxes per step.

    ``boxes`` are the per-frame boxes (``frame_boxes``); each step takes those of its first frame, and the
    last frame's close the list.
    """
    actions = events_to_dsg(story.gold_events())  # M graphs: the last phase ends at step M
    alignment = align_steps_to_frames(config.num_steps, config.num_frames)
    firsts = [first for first, _ in alignment.frames_of_step]
    return DynamicSceneGraph(
        events=actions.events,
        graphs=tuple(
            scene_at(tracks, t, config.relation_margin).merged(g) for t, g in zip(firsts, actions.graphs, strict=True)
        ),
        boxes=tuple(boxes[t] for t in (*firsts, config.num_frames - 1)),
    )


def frame_boxes(tracks: tuple[Track, ...], num_frames: int) -> tuple[tuple[Box, ...], ...]:
    """For every frame, the tight boxes of the shapes visible in it, in track order."""
    return tuple(_boxes_at(tracks, t) for t in range(num_frames))


def _boxes_at(tracks: tuple[Track, ...], frame: int) -> tuple[Box, ...]:
    return tuple(box_at(track, frame) for track in tracks if track.alpha[frame] > 0)


def box_at(track: Track, frame: int, shape: str | None = None) -> Box:
    """The tight box of ``track`` at ``frame``, drawn as ``shape`` (default: its name), named by its name."""
    corners = bounds(shape or track.name, track.x[frame], track.y[frame], track.radius[frame], track.angle[frame])
    x0, y0, x1, y1 = (min(max(round(c, 4), 0.0), 1.0) for c in corners)
    return Box(object=track.name, x0=x0, y0=y0, x1=x1, y1=y1, angle=round(track.angle[frame], 4))


def scene_at(tracks: tuple[Track, ...], frame: int, margin: float) -> SceneGraph:
    """Visible shapes, their colour and size, and the spatial relations between them at ``frame``."""
    shown = [track for track in tracks if track.alpha[frame] > 0]
    attributes = [(t.name, value) for t in shown for value in (t.colour[frame], t.size[frame])]
    relations = []
    for a in shown:
        for b in shown:
            dx, dy = b.x[frame] - a.x[frame], b.y[frame] - a.y[frame]
            if dx > margin:
                relations += [(a.name, "left of", b.name), (b.name, "right of", a.name)]
            if dy > margin:
                relations += [(a.name, "above", b.name), (b.name, "below", a.name)]
    return SceneGraph.from_facts(relations=relations, attributes=attributes, objects=[t.name for t in shown])
