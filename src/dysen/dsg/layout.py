"""Frame layout: where each object of a DSG is at every video frame, how it is turned, and how far its action has got.

A DSG's optional boxes are keyframes at step boundaries: ``boxes[m]`` holds each object visible at step ``m``
as it is at the step's first frame (``align_steps_to_frames``), and an optional ``boxes[M]`` the objects
visible at the last frame. An object is present at frame ``t`` iff it has a box at the step frame ``t`` shows
(at the last frame, iff it has one in ``boxes[M]``, when there is one); its box and angle there are
interpolated linearly between the keyframe at or before ``t`` and the next one, and held after its last.
Without ``boxes[M]`` the frames after the last step's first frame hold that step's boxes, so a move or a jump
that ends the clip stops short of its end in the layout. Its *progress* at ``t`` is the share of its active
event's frame window done by the end of frame ``t``, ``(t - f0 + 1) / (f1 - f0)``, or None when it is idle:
boxes say where, angles how turned, progress how far along (a fade's opacity, the middle of a jump), and the
UNet sees all three (``dysen.models.graph_batch.GraphBatch``'s layout fields).
"""

from __future__ import annotations

from dataclasses import dataclass

from dysen.dsg.convert import FrameAlignment, align_steps_to_frames
from dysen.dsg.types import Box, DynamicSceneGraph

BoxTuple = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in [0, 1] image coordinates (x right, y down)."""

_Pose = tuple[float, float, float, float, float]
"""``(x0, y0, x1, y1, angle)``: a box and its object's turn, interpolated together."""


@dataclass(frozen=True)
class ObjectAtFrame:
    """One object at one frame: its graph node, its box and turn, and its action's progress."""

    object: str
    box: BoxTuple
    progress: float | None
    """Share of the object's active event done by the end of the frame, in (0, 1]; None when idle."""
    angle: float = 0.0
    """Clockwise turn from upright, radians, unwrapped (``Box.angle``)."""


def frame_layout(dsg: DynamicSceneGraph, num_frames: int) -> tuple[tuple[ObjectAtFrame, ...], ...] | None:
    """For every frame, the objects present with their box, angle and progress; None when ``dsg`` has no boxes."""
    if dsg.boxes is None:
        return None
    alignment = align_steps_to_frames(dsg.num_steps, num_frames)
    keyframes = [first for first, _ in alignment.frames_of_step]  # [M] frame of each step's boxes
    last_is_keyed = len(dsg.boxes) > dsg.num_steps
    if last_is_keyed:
        keyframes.append(num_frames - 1)  # [M + 1]: boxes[M] is the last frame
    poses_at = [{box.object: _as_pose(box) for box in keyframe_boxes} for keyframe_boxes in dsg.boxes]
    layout = []
    for frame, steps in enumerate(alignment.steps_of_frame):
        step = steps[0]
        if last_is_keyed and frame == num_frames - 1:
            poses = {name: pose for name, pose in poses_at[-1].items() if name in dsg.graphs[step].objects}
        else:
            poses = {name: _interpolate(poses_at, keyframes, name, step, frame) for name in poses_at[step]}
        layout.append(
            tuple(
                ObjectAtFrame(name, pose[:4], _progress(dsg, name, frame, alignment), pose[4])
                for name, pose in poses.items()
            )
        )
    return tuple(layout)


def _as_pose(box: Box) -> _Pose:
    return (box.x0, box.y0, box.x1, box.y1, box.angle)


def _interpolate(poses_at: list[dict[str, _Pose]], keyframes: list[int], name: str, step: int, frame: int) -> _Pose:
    """The pose of ``name`` at ``frame`` (in ``step``): linear towards its pose at the next keyframe, if any."""
    pose = poses_at[step][name]
    following = step + 1
    if following >= len(poses_at) or name not in poses_at[following] or keyframes[following] == keyframes[step]:
        return pose
    after = poses_at[following][name]
    share = (frame - keyframes[step]) / (keyframes[following] - keyframes[step])
    return tuple(a + share * (b - a) for a, b in zip(pose, after, strict=True))  # type: ignore[return-value]


def _progress(dsg: DynamicSceneGraph, name: str, frame: int, alignment: FrameAlignment) -> float | None:
    """Progress of the first event of ``name`` whose frame window holds ``frame``, or None."""
    for event in dsg.events:
        if event.agent == name:
            first, stop = alignment.event_frames(event)
            if first <= frame < stop:
                return (frame - first + 1) / (stop - first)
    return None
