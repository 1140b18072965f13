"""Step II of Dysen: events -> one scene graph per time step, and time steps -> video frames.

Dysen-VDM §3.2, Step II (dysen_spec.md §2.2). The conversion is deterministic and uses no LLM.

Time steps. Event times are integers in the abstract unit v. Step ``m`` is the unit interval
``[m v, (m+1) v)`` for ``m = 0 .. M-1`` with ``M = max(end)`` over the events (``M = 1`` with no
events: one empty, static scene). Event ``k`` is active at step ``m`` iff ``start_k <= m < end_k``.
The spans are half-open: the paper's code drops an event at its end point while its figure keeps it,
faded. We keep it out, so an event that follows another never shares a step with it, and the DSG has
no trailing step in which nothing happens.

Scene graph of a step. Each active event with a target gives the relation ``(agent, predicate,
target)``; an intransitive one gives the attribute ``(agent, predicate)``, Visual-Genome style, e.g.
``(circle, jumps)``. The objects are the agents and targets of the active events, in order of first
mention. The events are kept in the DSG, sorted stably by ``(start, end)``.

Frames. With ``T`` frames and ``M`` steps, frame ``t`` covers the steps ``m`` with
``floor(t M / T) <= m < max(floor((t+1) M / T), floor(t M / T) + 1)``: exactly one step when
``T >= M`` (each step then owns a contiguous run of at least one frame), and a run of at least one
step when ``T < M``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from dysen.dsg.types import LIMITS, DynamicSceneGraph, Event, SceneGraph, describe_error
from dysen.errors import DSGError


def events_to_dsg(events: Iterable[Event]) -> DynamicSceneGraph:
    """Step II: the DSG whose step ``m`` holds the facts of the events active during ``[m v, (m+1) v)``."""
    given = tuple(events)
    wrong = [type(e).__name__ for e in given if not isinstance(e, Event)]
    if wrong:
        raise DSGError(f"events_to_dsg needs Event objects, got {wrong[0]}; build them with Event(...)")
    if len(given) > LIMITS.max_events:
        raise DSGError(f"{len(given)} events; the limit is {LIMITS.max_events} (DSGLimits.max_events): plan fewer")
    ordered = tuple(sorted(given, key=lambda e: (e.start, e.end)))
    num_steps = max((e.end for e in ordered), default=1)
    try:
        graphs = tuple(_graph_at(ordered, step) for step in range(num_steps))
        return DynamicSceneGraph(events=ordered, graphs=graphs)
    except ValidationError as err:  # a bound of DSGLimits
        raise DSGError(f"invalid dynamic scene graph: {describe_error(err)}") from None


def _graph_at(events: tuple[Event, ...], step: int) -> SceneGraph:
    active = [e for e in events if e.start <= step < e.end]
    return SceneGraph.from_facts(
        relations=[(e.agent, e.predicate, e.target) for e in active if e.target is not None],
        attributes=[(e.agent, e.predicate) for e in active if e.target is None],
        objects=[name for e in active for name in (e.agent, e.target) if name is not None],
    )


@dataclass(frozen=True)
class FrameAlignment:
    """Which time steps each video frame shows, and which frames each step spans (see the module docstring)."""

    num_steps: int
    num_frames: int
    steps_of_frame: tuple[tuple[int, ...], ...]
    """For each frame, the steps it covers (one when ``num_frames >= num_steps``)."""
    frames_of_step: tuple[tuple[int, int], ...]
    """For each step, its half-open frame span ``(first, last_exclusive)``."""

    def matrix(self) -> list[list[int]]:
        """The ``num_frames x num_steps`` 0/1 matrix: 1 where a frame shows a step (a cross-attention mask)."""
        return [[int(step in steps) for step in range(self.num_steps)] for steps in self.steps_of_frame]

    def event_frames(self, event: Event) -> tuple[int, int]:
        """The half-open frame span ``(first, last_exclusive)`` during which ``event`` is active."""
        if event.end > self.num_steps:
            raise DSGError(
                f"event {event.triplet} ends at {event.end}v, after the last of the {self.num_steps} time steps"
            )
        return self.frames_of_step[event.start][0], self.frames_of_step[event.end - 1][1]


def align_steps_to_frames(num_steps: int, num_frames: int) -> FrameAlignment:
    """Spread ``num_steps`` time steps evenly over ``num_frames`` frames (rule in the module docstring)."""
    for name, value in (("num_steps", num_steps), ("num_frames", num_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DSGError(f"{name} must be a positive integer, got {value!r}")
    steps_of_frame = []
    for frame in range(num_frames):
        first = frame * num_steps // num_frames
        stop = max((frame + 1) * num_steps // num_frames, first + 1)
        steps_of_frame.append(tuple(range(first, stop)))
    first_frame: dict[int, int] = {}
    last_frame: dict[int, int] = {}
    for frame, steps in enumerate(steps_of_frame):
        for step in steps:
            first_frame.setdefault(step, frame)
            last_frame[step] = frame + 1
    return FrameAlignment(
        num_steps=num_steps,
        num_frames=num_frames,
        steps_of_frame=tuple(steps_of_frame),
        frames_of_step=tuple((first_frame[m], last_frame[m]) for m in range(num_steps)),
    )
