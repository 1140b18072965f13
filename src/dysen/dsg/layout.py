"""Frame layout: where each object of a DSG is at every video frame, and how far its action has got.

A DSG's optional boxes are keyframes: ``boxes[m]`` holds each object visible at step ``m`` as it is at the
step's first frame (``align_steps_to_frames``). An object is present at frame ``t`` iff it has a box at the
step frame ``t`` shows; its box there is interpolated linearly between the keyframe at or before ``t`` and
the next one, and held after its last. Its *progress* at ``t`` is the share of its active event's frame
window done by the end of frame ``t``, ``(t - f0 + 1) / (f1 - f0)``, or None when it is idle: boxes say
where, progress says how far along (a rotation's angle, a fade's opacity, the middle of a jump), and the
UNet sees both (``dysen.models.rgtrm.GraphBatch``'s layout fields).
"""

from __future__ import annotations

from dataclasses import dataclass

from dysen.dsg.convert import FrameAlignment, align_steps_to_frames
from dysen.dsg.types import Box, DynamicSceneGraph

BoxTuple = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in [0, 1] image coordinates (x right, y down)."""


@dataclass(frozen=True)
class ObjectAtFrame:
    """One object at one frame: its graph node, its box, and its action's progress."""

    object: str
    box: BoxTuple
    progress: float | None
    """Share of the object's active event done by the end of the frame, in (0, 1]; None when idle."""


def frame_layout(dsg: DynamicSceneGraph, num_frames: int) -> tuple[tuple[ObjectAtFrame, ...], ...] | None:
    """For every frame, the objects present with their box and progress; None when ``dsg`` has no boxes."""
    if dsg.boxes is None:
        return None
    alignment = align_steps_to_frames(dsg.num_steps, num_frames)
    keyframes = [first for first, _ in alignment.frames_of_step]  # [M] frame of each step's boxes
    boxes_at = [{box.object: _as_tuple(box) for box in step_boxes} for step_boxes in dsg.boxes]  # [M] name -> box
    layout = []
    for frame, steps in enumerate(alignment.steps_of_frame):
        step = steps[0]
        layout.append(
            tuple(
                ObjectAtFrame(
                    name,
                    _interpolate(boxes_at, keyframes, name, step, frame),
                    _progress(dsg, name, frame, alignment),
                )
                for name in boxes_at[step]
            )
        )
    return tuple(layout)


def _as_tuple(box: Box) -> BoxTuple:
    return (box.x0, box.y0, box.x1, box.y1)


def _interpolate(
    boxes_at: list[dict[str, BoxTuple]], keyframes: list[int], name: str, step: int, frame: int
) -> BoxTuple:
    """The box of ``name`` at ``frame`` (in ``step``): linear towards its box at the next step, if it has one."""
    box = boxes_at[step][name]
    following = step + 1
    if following >= len(boxes_at) or name not in boxes_at[following] or keyframes[following] == keyframes[step]:
        return box
    share = (frame - keyframes[step]) / (keyframes[following] - keyframes[step])
    after = boxes_at[following][name]
    return tuple(a + share * (b - a) for a, b in zip(box, after, strict=True))  # type: ignore[return-value]


def _progress(dsg: DynamicSceneGraph, name: str, frame: int, alignment: FrameAlignment) -> float | None:
    """Progress of the first event of ``name`` whose frame window holds ``frame``, or None."""
    for event in dsg.events:
        if event.agent == name:
            first, stop = alignment.event_frames(event)
            if first <= frame < stop:
                return (frame - first + 1) / (stop - first)
    return None
