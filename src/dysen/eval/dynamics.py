"""Action faithfulness on Dynamic Shapes from pixels alone: action detectors and a score against a DSG.

Dysen-VDM's claim is better *dynamics*: the right actions, in the right order, at the right time
(dysen_spec.md §7). Every Dynamic Shapes clip has an exact gold DSG, so any video of its caption
(rendered, generated or re-encoded) can be checked against it without a learned model: find the shapes,
follow them, and ask whether each gold event happens in its frame window. Numpy only (no OpenCV/scipy).

Finding and following the shapes (pixels to one ``ShapeTrack`` per shape noun: ``track_shapes``) is
``dysen.eval.tracking``; this module goes from tracks to verdicts.

Detectors: each action is a change of one per-frame signal (x, y, log radius, orientation, opacity,
colour) across its window, with a calibrated least change (constants below). ``score_video`` checks each
gold event in its window (``TOLERANCE_FRAMES``), and finds where, if anywhere, the action happens for the
order metric; ``detect_actions`` cuts tracks into actions with no DSG at all, for reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dysen.dsg.convert import FrameAlignment
from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.eval.tracking import (
    DEFAULT_PALETTE,
    FAINT,
    SYMMETRY,
    ShapeTrack,
    as_frames,
    find_blobs,
    label_components,
    track_shapes,
)
from dysen.world import vocab

if TYPE_CHECKING:
    import torch

__all__ = [
    "DetectedAction",
    "DynamicsScore",
    "EventResult",
    "detect_actions",
    "event_onset",
    "find_blobs",
    "label_components",
    "score_video",
    "track_shapes",
]

# -- calibrated constants -----------------------------------------------------------------------------------
# Measured on rendered Dynamic Shapes clips (64x64, 16 frames), raw and after write_video/read_video (H.264,
# crf 18, yuv420p); tests/test_dynamics.py checks the result on 500 + 50 fresh clips. Lengths are fractions
# of the frame side; "n" is the number of frames of an event window (4 to 16 at 16 frames and 8 steps).
# The tracker's thresholds (and ``FAINT``, below which a shape counts as gone) are in ``dysen.eval.tracking``.

TOLERANCE_FRAMES = 1
"""An event is detected if its action shows in its gold frame window shifted by at most this many frames."""

MOVE_MIN = 0.1
"""Least net displacement of 'moves <direction>': a third of the renderer's 0.3 (centre noise < 0.003)."""

JUMP_MIN = 0.08
"""Least lift of 'jumps': a third of the renderer's 0.25."""

JUMP_RETURN = 0.5
"""A jump lands within this share of its lift of where it took off (otherwise it is a move)."""

JUMP_CUT_SHARE = 0.25
"""Where the clip cuts a jump (take-off before the first frame, landing after the last), its shorter side
need only be this share of its longer one: a 4-frame jump that ends a clip is last seen 38% down."""

SIZE_RATIO = 1.25
"""Least circumradius ratio of 'grows' / 'shrinks': the renderer's large/small ratio is 1.67."""

ROTATE_MIN = 0.5
"""Least turn of 'rotates', in symmetry periods of the shape, either way (the renderer turns 1.5 clockwise;
the caption names no direction). Orientation error < 5 degrees."""

OPAQUE = 0.6
"""Opacity at or above which a shape counts as fully shown ('appears', 'disappears'; at or below
``tracking.FAINT`` it counts as gone). The renderer fades through 1/(n+1) .. n/(n+1); the opacity estimate
is 0.86-1.0 of the truth."""

ONSET_FRACTION = 0.05
"""An action's onset is the first frame where its signal has made this share of its change (a 16-frame
move makes 6% per frame; a window that starts the clip, whose state before is unseen, starts at frame 1)."""

STEP_MIN: dict[str, float] = {"position": 0.005, "logr": 0.015, "angle": 0.04, "opacity": 0.03}
"""Per-frame change that counts as changing when ``detect_actions`` cuts a track into actions (angle in
symmetry periods; log radius and opacity after a 3-frame moving average). 99th-percentile noise after H.264:
0.0016, 0.009, 0.007, 0.013; the slowest rendered actions change 0.019, 0.032, 0.094, 0.054 per frame."""

APEX_SLOW = 0.5
"""A rise and then a fall make one jump (not 'moves up', 'moves down') if the shape slows at the apex: a
still frame, or speeds next to the apex below this share of the peak speed."""


# -- an action in a window ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """How one action shows in a track: a per-frame signal that grows as the action proceeds."""

    signal: str
    """'x', 'y', 'logr', 'angle' (symmetry periods), 'opacity' or 'colour' (1 where it is the target), with
    '-' for the decreasing ones."""
    minimum: float
    """Least change of the signal from the frame before the window to its end."""
    lands: bool = False
    """The evidence ends one frame after the window: a jump lands then (its last window frame is mid-air)."""
    holds: bool = True
    """The change must still be there one frame later, when the clip goes on (half a jump is no 'moves up');
    not for jumps and rotations, which may come back."""


_RULES: dict[str, _Rule] = {
    "move_left": _Rule("-x", MOVE_MIN),
    "move_right": _Rule("x", MOVE_MIN),
    "move_up": _Rule("-y", MOVE_MIN),
    "move_down": _Rule("y", MOVE_MIN),
    "jump": _Rule("-y", JUMP_MIN, lands=True, holds=False),
    "grow": _Rule("logr", math.log(SIZE_RATIO)),
    "shrink": _Rule("-logr", math.log(SIZE_RATIO)),
    "rotate": _Rule("angle", ROTATE_MIN, holds=False),
    "appear": _Rule("opacity", OPAQUE - FAINT),
    "disappear": _Rule("-opacity", OPAQUE - FAINT),
    "change_colour": _Rule("colour", 1.0),
}


def _signal(track: ShapeTrack, name: str, target: str | None) -> np.ndarray:
    """The per-frame signal ``name`` of ``track`` ``[T]`` (NaN where it cannot be measured)."""
    base = name.lstrip("-")
    if base == "logr":
        values = np.log(track.radius)
    elif base == "angle":
        values = track.angle * SYMMETRY.get(track.shape, 1) / (2 * math.pi)
    elif base == "colour":
        values = np.array([float(c == target) for c in track.colour])
    else:
        values = getattr(track, base)
    return -values if name.startswith("-") else values  # [T]


def _peak(values: np.ndarray) -> float:
    """The largest of ``values`` over the frames where it was measured; NaN unless it was measured at both ends.

    A frame in between where the tracker lost the shape (NaN) is unknown, not evidence against the action:
    like every other rule, a jump needs its ends seen, and its apex where it was seen.
    """
    if np.isnan(values[0]) or np.isnan(values[-1]):
        return math.nan
    return float(np.nanmax(values))


def _is_jump(lift: np.ndarray, before: int, after: int) -> bool:
    """Whether ``lift`` ``[T]`` (-y) rises and comes back down between frames ``before`` and ``after``."""
    peak = _peak(lift[before : after + 1])
    rise, fall = peak - lift[before], peak - lift[after]
    cut = before == 0 or after == len(lift) - 1  # the take-off or the landing may lie outside the clip
    share = JUMP_CUT_SHARE if cut else 1.0 - JUMP_RETURN
    return bool(max(rise, fall) >= JUMP_MIN and min(rise, fall) >= share * max(rise, fall))


def _fades(action: str, opacity: np.ndarray, before: int, after: int) -> bool:
    """For 'appear' / 'disappear': gone before / after, fully shown at the other end; True for other actions."""
    if action == "appear":
        return bool(np.all(opacity[: before + 1] <= FAINT) and opacity[after] >= OPAQUE)
    if action == "disappear":
        return bool(opacity[before] >= OPAQUE and np.all(opacity[after:] <= FAINT))
    return True


def _window_onset(track: ShapeTrack, action: str, target: str | None, before: int, after: int) -> int | None:
    """The onset if ``action`` shows from frame ``before`` (the state before) to ``after``, else None."""
    rule = _RULES[action]
    signal = _signal(track, rule.signal, target)  # [T]
    progress = signal[before : after + 1] - signal[before]  # [W]
    if action == "rotate":
        progress = np.abs(progress)
    change = _peak(progress) if action == "jump" else progress[-1]
    if not change >= rule.minimum:  # also False for NaN: the shape was not seen
        return None
    if rule.holds and after + 1 < len(signal) and not signal[after + 1] - signal[before] >= rule.minimum:
        return None
    if action == "jump" and not _is_jump(-track.y, before, after):
        return None
    if not _fades(action, track.opacity, before, after):
        return None
    return before + int(np.argmax(progress >= ONSET_FRACTION * change))


def _first_onset(
    track: ShapeTrack, action: str, target: str | None, frames: tuple[int, int], shifts: list[int]
) -> int | None:
    """The onset in the first of the windows ``[f0, f1)`` moved by each of ``shifts`` that shows ``action``.

    The evidence runs from the frame before the moved window to its last frame (the frame after it for a
    jump), clipped to the clip.
    """
    last = len(track.visible) - 1
    for shift in shifts:
        before = min(max(frames[0] - 1 + shift, 0), last)
        after = min(max(frames[1] - 1 + shift + _RULES[action].lands, 0), last)
        onset = _window_onset(track, action, target, before, after) if before < after else None
        if onset is not None:
            return onset
    return None


def event_onset(track: ShapeTrack, action: str, target: str | None, frames: tuple[int, int]) -> int | None:
    """Onset of ``action`` (``vocab.Action.name``) in the frame window ``frames`` give or take
    ``TOLERANCE_FRAMES``, or None if it does not show there."""
    shifts = sorted(range(-TOLERANCE_FRAMES, TOLERANCE_FRAMES + 1), key=abs)
    return _first_onset(track, action, target, frames, shifts)


# -- every action of a clip, no DSG needed ------------------------------------------------------------------


@dataclass(frozen=True)
class DetectedAction:
    """An action seen in a clip: who (shape noun), what (``vocab.Action.name``), when (frames ``[start, end)``)."""

    agent: str
    action: str
    target: str | None
    """The new colour of 'change_colour'; None otherwise."""
    start: int
    """Onset: the first frame that differs from the state before."""
    end: int
    """One past the last frame that changes."""

    @property
    def predicate(self) -> str:
        """The gold-DSG predicate of the action, e.g. 'moves left'."""
        return vocab.ACTIONS_BY_NAME[self.action].predicate


def _smooth(values: np.ndarray) -> np.ndarray:
    """Three-frame moving average of ``values`` ``[T]`` (ends repeated); NaN spreads to its neighbours."""
    padded = np.concatenate([values[:1], values, values[-1:]])  # [T + 2]
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0


def _signed_runs(values: np.ndarray, step_min: float, total_min: float) -> list[tuple[int, int, int]]:
    """``(start, end, sign)`` of the runs of frames over which ``values`` ``[T]`` rises (+1) or falls (-1) by
    more than ``step_min`` a frame (a single still frame may interrupt), in all by ``total_min`` or more."""
    steps = np.diff(values)  # [T - 1]; NaN where the shape was not seen
    found = []
    for sign in (1, -1):
        changed = np.flatnonzero(sign * steps > step_min) + 1  # frames that differ from the one before
        for run in np.split(changed, np.flatnonzero(np.diff(changed) > 2) + 1):
            if len(run) and sign * (values[run[-1]] - values[run[0] - 1]) >= total_min:
                found.append((int(run[0]), int(run[-1]) + 1, sign))
    return sorted(found)


def _vertical(track: ShapeTrack) -> list[DetectedAction]:
    """Jumps (a rise, a slow apex, a fall back) and the other vertical moves of one track."""
    lift = -track.y  # [T]
    speed = np.abs(np.diff(lift))  # [T - 1] speed into frames 1..T-1
    runs = _signed_runs(lift, STEP_MIN["position"], JUMP_CUT_SHARE * JUMP_MIN)
    found, used = [], set()
    for (a0, a1, up), (b0, b1, down) in zip(runs, runs[1:], strict=False):
        if up < 0 or down > 0 or b0 - a1 > max(2, (a1 - a0 + b1 - b0) // 2) or {a0, b0} & used:
            continue
        apex = max(speed[a1 - 2], speed[b0 - 1])  # into the last rising frame, into the first falling one
        slow = b0 > a1 or apex <= APEX_SLOW * np.nanmax(speed[a0 - 1 : b1 - 1])
        if slow and _is_jump(lift, a0 - 1, b1 - 1):
            found.append(DetectedAction(track.shape, "jump", None, a0, b1))
            used |= {a0, b0}
    for start, end, sign in runs:
        if start not in used and sign * (lift[end - 1] - lift[start - 1]) >= MOVE_MIN:
            found.append(DetectedAction(track.shape, "move_up" if sign > 0 else "move_down", None, start, end))
    return found


def _monotone(track: ShapeTrack) -> list[DetectedAction]:
    """Horizontal moves, size changes, rotations and fades of one track."""
    found = []
    channels = (
        (track.x, STEP_MIN["position"], MOVE_MIN, ("move_right", "move_left")),
        (_smooth(np.log(track.radius)), STEP_MIN["logr"], math.log(SIZE_RATIO), ("grow", "shrink")),
        (_signal(track, "angle", None), STEP_MIN["angle"], ROTATE_MIN, ("rotate", "rotate")),
    )
    for values, step, total, (rising, falling) in channels:
        for start, end, sign in _signed_runs(values, step, total):
            found.append(DetectedAction(track.shape, rising if sign > 0 else falling, None, start, end))
    opacity = _smooth(track.opacity)  # [T]
    for start, end, sign in _signed_runs(opacity, STEP_MIN["opacity"], OPAQUE - FAINT):
        low, high = sorted((opacity[start - 1], opacity[end - 1]))
        if low <= FAINT and high >= OPAQUE:
            found.append(DetectedAction(track.shape, "appear" if sign > 0 else "disappear", None, start, end))
    return found


def _colour_changes(track: ShapeTrack) -> list[DetectedAction]:
    """'turns <colour>' wherever the colour of the two frames before differs from that of the two frames after."""
    colours = track.colour
    found = []
    for t in range(1, len(colours)):
        before = {c for c in colours[max(t - 2, 0) : t] if c is not None}
        after = {c for c in colours[t : t + 2] if c is not None}
        if len(before) == len(after) == 1 and before != after and colours[t] is not None:
            found.append(DetectedAction(track.shape, "change_colour", colours[t], t, t + 1))
    return found


def detect_actions(
    frames: np.ndarray | torch.Tensor, colours: tuple[str, ...] = DEFAULT_PALETTE
) -> list[DetectedAction]:
    """Every action seen in uint8 ``[T, H, W, 3]`` frames, by onset; colours read among ``colours``.

    Runs of change per signal; back-to-back actions on one signal merge (e.g. 'moves up' then 'jumps' reads
    as one jump), which is why ``score_video`` does not rely on this for its metrics.
    """
    return _detect(track_shapes(frames, colours))


def _detect(tracks: dict[str, ShapeTrack]) -> list[DetectedAction]:
    found = [d for t in tracks.values() for d in _vertical(t) + _monotone(t) + _colour_changes(t)]
    return sorted(found, key=lambda d: (d.start, d.end, d.agent, d.action))


# -- scoring against a DSG ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventResult:
    """How one gold event fared."""

    event: Event
    frames: tuple[int, int]
    """Its gold frame window ``[f0, f1)`` (frame t shows step floor(t M / T))."""
    detected: bool
    """Whether its action shows in that window, give or take ``TOLERANCE_FRAMES``."""
    onset: int | None
    """Where it starts there (None if not detected)."""
    seen_at: int | None
    """Onset of the action in the window of the same length nearest to the gold one, anywhere in the clip
    (None if it never happens): what the order metric compares."""


@dataclass(frozen=True)
class DynamicsScore:
    """Action faithfulness of one video to its DSG: shares in [0, 1], None where there is nothing to count."""

    object_fidelity: float | None
    """Share of the DSG's shape objects that are seen, with the gold colour wherever they are seen (±1 frame)."""
    action_accuracy: float | None
    """Share of events whose action shows in its frame window, give or take ``TOLERANCE_FRAMES``."""
    order_accuracy: float | None
    """Over the pairs of events with disjoint gold windows: share whose actions happen (``seen_at``) in the gold
    order; a tie counts half, an action that never happens counts as out of order."""
    order_when_seen: float | None
    """The same over the pairs whose actions both happen somewhere (None if no such pair): whether what is drawn
    comes in the right order, apart from what is not drawn at all (which ``order_accuracy`` also counts)."""
    events: tuple[EventResult, ...]
    detections: tuple[DetectedAction, ...]
    """Everything ``detect_actions`` sees, for reports."""


def _shape_of(name: str) -> str | None:
    """The shape an object name names ('circle', 'red circle', 'ball': ``vocab.SHAPE_OF_NOUN``), or None (e.g. a
    colour object of 'turns')."""
    shapes = [vocab.SHAPE_OF_NOUN[word] for word in name.lower().split() if word in vocab.SHAPE_OF_NOUN]
    return shapes[-1] if shapes else None


def _score_event(tracks: dict[str, ShapeTrack], event: Event, frames: tuple[int, int]) -> EventResult:
    """Detect one event in its window and find where its action happens (unknown agents/predicates: never)."""
    shape, action = _shape_of(event.agent), _action_of(event)
    track = tracks.get(shape) if shape else None
    if track is None or action is None:
        return EventResult(event, frames, False, None, None)
    onset = event_onset(track, action.name, event.target, frames)
    everywhere = sorted(range(-len(track.visible), len(track.visible) + 1), key=lambda d: (abs(d), d))
    seen_at = _first_onset(track, action.name, event.target, frames, everywhere)
    return EventResult(event, frames, onset is not None, onset, seen_at)


def _action_of(event: Event) -> vocab.Action | None:
    """The world's action an event shows: its canonical motion's ("slides to the left" -> move_left), else the one
    its predicate names in the gold wording ("moves left"); None for what the world cannot show."""
    if event.motion is not None and event.motion.action in vocab.ACTIONS_BY_NAME:
        return vocab.ACTIONS_BY_NAME[event.motion.action]
    return vocab.ACTIONS_BY_PREDICATE.get(event.predicate)


def _order_accuracy(results: tuple[EventResult, ...], *, seen_only: bool = False) -> float | None:
    """Agreement of ``seen_at`` with the gold order over the pairs of events with disjoint gold windows (with
    ``seen_only``, over those whose actions both happen)."""
    credit = []
    for first in results:
        for second in results:
            if first.event.end <= second.event.start:
                a, b = first.seen_at, second.seen_at
                if a is None or b is None:
                    if not seen_only:
                        credit.append(0.0)
                    continue
                credit.append(1.0 if a < b else 0.5 if a == b else 0.0)
    return float(np.mean(credit)) if credit else None


def _object_fidelity(
    tracks: dict[str, ShapeTrack], dsg: DynamicSceneGraph, alignment: FrameAlignment, colours: tuple[str, ...]
) -> float | None:
    """Share of shape objects seen, showing at every step where they are seen the colour gold gives them there."""
    num_frames = len(alignment.steps_of_frame)
    faithful = []
    for name in dict.fromkeys(n for graph in dsg.graphs for n in graph.objects if _shape_of(n)):
        track = tracks.get(_shape_of(name))
        ok = track is not None
        for step, graph in enumerate(dsg.graphs):
            first, end = alignment.frames_of_step[step]
            near = range(max(first - TOLERANCE_FRAMES, 0), min(end + TOLERANCE_FRAMES, num_frames))
            seen = {track.colour[t] for t in near if track.visible[t]} if ok else set()
            gold = {a.attribute for a in graph.attributes if a.object == name and a.attribute in colours}
            ok = ok and (not seen or gold <= seen)
        faithful.append(ok)
    return float(np.mean(faithful)) if faithful else None


def score_video(
    frames: np.ndarray | torch.Tensor, dsg: DynamicSceneGraph, colours: tuple[str, ...] = DEFAULT_PALETTE
) -> DynamicsScore:
    """Score uint8 ``[T, H, W, 3]`` frames (numpy or torch) against ``dsg``: objects, actions, order; ``colours``:
    the world's palette (``ShapesConfig.colours``; default the default world's six)."""
    video = as_frames(frames)
    tracks = track_shapes(video, colours)
    alignment = dsg.align(video.shape[0])
    results = tuple(_score_event(tracks, e, alignment.event_frames(e)) for e in dsg.events)
    return DynamicsScore(
        object_fidelity=_object_fidelity(tracks, dsg, alignment, tuple(colours)),
        action_accuracy=float(np.mean([r.detected for r in results])) if results else None,
        order_accuracy=_order_accuracy(results),
        order_when_seen=_order_accuracy(results, seen_only=True),
        events=results,
        detections=tuple(_detect(tracks)),
    )
