"""How each action plays out, frame by frame, and where the shapes stand so that all of it stays visible.

An event over steps ``[s, e)`` animates exactly the frames of those steps, ``[f0, f1)`` with n frames
(``dysen.dsg.convert.align_steps_to_frames``; frame t shows step floor(t M / T)). Window frame k uses
the progress p = (k + 1) / n (reaches 1 on the window's last frame; nothing changes after it) or, for
the back-and-forth or fading actions, q = (k + 1) / (n + 1) (strictly inside (0, 1) on every window frame):

* moves <dir>: linear shift by ``move_distance``·p;
* jumps: lift by ``jump_height``·sin(π q), so the shape is off the ground exactly on the window frames;
* grows / shrinks: radius from one ``vocab.SIZES`` value to the other by p; the size name switches at f1;
* rotates: clockwise turn by ``rotate_periods`` symmetry periods · p;
* appears: opacity q on the window, 0 before (no pixel at all); disappears: 1 − q, then 0 after;
* turns <colour>: hard switch to the new colour at frame f0 + n // 2 (a blend would pass through other
  vocabulary colours, e.g. red→yellow through orange).

Layout: the motion fixes each shape's offsets from its start; the start is drawn uniformly among the
positions that keep the circumscribed circle ``margin`` inside the frame at every visible frame, then
redrawn until every two visible shapes keep ``gap`` between their circumscribed circles at every frame,
so no shape ever hides another.

Start pose (``ShapesConfig.start_angle``): upright, or with 'random' each polygon turned by an angle uniform in
[0, its symmetry period) at every frame (``start_turns``, ``turned``); a 'rotates' turns on from there. A turn
never changes the circumscribed circle, so the layout holds either way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dysen.dsg.convert import FrameAlignment, align_steps_to_frames
from dysen.world import vocab
from dysen.world.config import ShapesConfig
from dysen.world.geometry import SYMMETRY
from dysen.world.story import Story, StoryEvent

_LAYOUT_TRIES = 20
"""Start positions drawn per story before the story itself is redrawn."""

_DIRECTIONS: dict[str, tuple[float, float]] = {
    "move_left": (-1.0, 0.0),
    "move_right": (1.0, 0.0),
    "move_up": (0.0, -1.0),
    "move_down": (0.0, 1.0),
}


@dataclass(frozen=True)
class Track:
    """One shape at every frame: all the renderer draws and the gold DSG reads. Lengths: fractions of the side."""

    name: str
    """The shape noun, also its object name in the DSG."""
    x: tuple[float, ...]
    y: tuple[float, ...]
    """Centre per frame (x right, y down)."""
    radius: tuple[float, ...]
    """Circumscribed radius per frame."""
    angle: tuple[float, ...]
    """Clockwise rotation per frame, radians."""
    alpha: tuple[float, ...]
    """Opacity per frame; 0 = absent (not drawn, no box, not in the scene graph)."""
    colour: tuple[str, ...]
    """Colour name shown per frame."""
    size: tuple[str, ...]
    """Size name per frame (switches when a grow/shrink ends)."""


@dataclass
class _Motion:
    """Per-frame state of one shape relative to its start position, built event by event."""

    dx: np.ndarray  # [T]
    dy: np.ndarray  # [T]
    radius: np.ndarray  # [T]
    angle: np.ndarray  # [T]
    alpha: np.ndarray  # [T]
    colour: list[str]  # [T]
    size: list[str]  # [T]


def _animate(
    story: Story, agent: int, events: list[StoryEvent], alignment: FrameAlignment, config: ShapesConfig
) -> _Motion:
    """Play ``events``, those of one shape in time order, over the clip's frames (rules in the module docstring)."""
    shape, num_frames = story.shapes[agent], config.num_frames
    motion = _Motion(
        dx=np.zeros(num_frames),
        dy=np.zeros(num_frames),
        radius=np.full(num_frames, vocab.SIZES[shape.size]),
        angle=np.zeros(num_frames),
        alpha=np.ones(num_frames),
        colour=[shape.colour] * num_frames,
        size=[shape.size] * num_frames,
    )
    for event in events:
        f0, f1 = alignment.frames_of_step[event.start][0], alignment.frames_of_step[event.end - 1][1]
        _apply(motion, event, shape.shape, f0, f1, config)
    return motion


def _apply(motion: _Motion, event: StoryEvent, shape: str, f0: int, f1: int, config: ShapesConfig) -> None:
    """Add one event, animated over frames ``[f0, f1)``, to ``motion``."""
    n = f1 - f0
    p = np.arange(1, n + 1) / n  # [n] progress, 1 on the last window frame
    q = np.arange(1, n + 1) / (n + 1)  # [n] progress strictly inside (0, 1)
    action = event.action
    if action in _DIRECTIONS:
        ux, uy = _DIRECTIONS[action]
        for offset, unit in ((motion.dx, ux), (motion.dy, uy)):
            offset[f0:f1] += unit * config.move_distance * p
            offset[f1:] += unit * config.move_distance
    elif action == "jump":
        motion.dy[f0:f1] -= config.jump_height * np.sin(np.pi * q)
    elif action in ("grow", "shrink"):
        new = "large" if action == "grow" else "small"
        old_r, new_r = motion.radius[f0], vocab.SIZES[new]
        motion.radius[f0:f1] = old_r + (new_r - old_r) * p
        motion.radius[f1:] = new_r
        motion.size[f1:] = [new] * (len(motion.size) - f1)
    elif action == "rotate":
        turn = config.rotate_periods * SYMMETRY[shape]
        motion.angle[f0:f1] += turn * p
        motion.angle[f1:] += turn
    elif action == "appear":
        motion.alpha[:f0] = 0.0
        motion.alpha[f0:f1] = q
    elif action == "disappear":
        motion.alpha[f0:f1] = 1.0 - q
        motion.alpha[f1:] = 0.0
    elif action == "change_colour":
        switch = f0 + n // 2
        motion.colour[switch:] = [event.target] * (len(motion.colour) - switch)
    else:
        raise ValueError(f"no animation for action {action!r}")


def place(story: Story, rng: np.random.Generator, config: ShapesConfig) -> tuple[Track, ...] | None:
    """Start positions for every shape of ``story``, as tracks; None when no placement keeps all of it visible."""
    alignment = align_steps_to_frames(config.num_steps, config.num_frames)
    events: list[list[StoryEvent]] = [[] for _ in story.shapes]  # per agent, in time order (Story.events_of)
    for event in story.events:
        events[event.agent].append(event)
    motions = [_animate(story, agent, events[agent], alignment, config) for agent in range(len(story.shapes))]
    ranges = [_start_range(m, config.margin) for m in motions]
    if any(r is None for r in ranges):
        return None
    meeting = _meeting(motions)
    for _ in range(_LAYOUT_TRIES):
        starts = [(rng.uniform(x0, x1), rng.uniform(y0, y1)) for x0, x1, y0, y1 in ranges]
        if _apart(motions, meeting, starts, config.gap):
            return tuple(_track(s.shape, m, start) for s, m, start in zip(story.shapes, motions, starts, strict=True))
    return None


def _start_range(motion: _Motion, margin: float) -> tuple[float, float, float, float] | None:
    """``(x_min, x_max, y_min, y_max)`` of the starts that keep the shape inside the margins whenever visible."""
    shown = motion.alpha > 0  # [T]
    r, dx, dy = motion.radius[shown], motion.dx[shown], motion.dy[shown]  # [V] each
    x0, x1 = float(np.max(margin + r - dx)), float(np.min(1.0 - margin - r - dx))
    y0, y1 = float(np.max(margin + r - dy)), float(np.min(1.0 - margin - r - dy))
    return (x0, x1, y0, y1) if x0 <= x1 and y0 <= y1 else None


def _meeting(motions: list[_Motion]) -> np.ndarray:
    """``[N, N]`` bool: whether shapes ``i < j`` are shown together in some frame (only they can collide)."""
    shown = np.stack([m.alpha > 0 for m in motions]).astype(np.float32)  # [N, T]
    return np.triu(shown @ shown.T > 0, k=1)


def _apart(motions: list[_Motion], meeting: np.ndarray, starts: list[tuple[float, float]], gap: float) -> bool:
    """Whether every two shapes keep ``gap`` between their circumscribed circles at every frame both show.

    Only pairs ``meeting`` (shown together) are checked, in the order i, j: a long clip costs its overlaps, not N²."""
    for i in range(len(motions)):
        for j in np.flatnonzero(meeting[i]):
            a, b = motions[i], motions[j]
            shown = (a.alpha > 0) & (b.alpha > 0)  # [T]
            ddx = (starts[i][0] + a.dx) - (starts[j][0] + b.dx)  # [T]
            ddy = (starts[i][1] + a.dy) - (starts[j][1] + b.dy)  # [T]
            if np.any(np.hypot(ddx, ddy)[shown] < (a.radius + b.radius + gap)[shown]):
                return False
    return True


def _track(name: str, motion: _Motion, start: tuple[float, float]) -> Track:
    """Freeze a placed motion into a ``Track`` of plain floats and names."""
    return Track(
        name=name,
        x=tuple(float(v) for v in start[0] + motion.dx),
        y=tuple(float(v) for v in start[1] + motion.dy),
        radius=tuple(float(v) for v in motion.radius),
        angle=tuple(float(v) for v in motion.angle),
        alpha=tuple(float(v) for v in motion.alpha),
        colour=tuple(motion.colour),
        size=tuple(motion.size),
    )


def start_turns(tracks: tuple[Track, ...], rng: np.random.Generator) -> tuple[float, ...]:
    """A start angle per track for ``start_angle='random'``: uniform in [0, the symmetry period) for a polygon,
    drawn in track order; 0 for a circle (it draws no number)."""
    return tuple(float(rng.uniform(0.0, SYMMETRY[t.name])) if t.name in SYMMETRY else 0.0 for t in tracks)


def turned(tracks: tuple[Track, ...], starts: tuple[float, ...]) -> tuple[Track, ...]:
    """``tracks`` with each shape's angle at every frame raised by its start angle (a turn keeps the layout)."""
    return tuple(
        replace(track, angle=tuple(start + a for a in track.angle)) if start else track
        for track, start in zip(tracks, starts, strict=True)
    )
