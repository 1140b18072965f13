"""Boxes for real videos' gold DSGs, from a multi-object tracker's output (``dysen dsg boxes``).

The DSG adapter (``dysen train-adapter``) and the layout-grounded Dysen-VDM learn objects in their boxes, so real
training data needs gold DSGs with boxes. ``dysen dsg annotate`` gives the events and scene graphs; the boxes come
from a detector and tracker you run on each video. dysen reads their output in the **MOTChallenge** text format,
which ByteTrack, BoT-SORT, OC-SORT, StrongSORT and BoxMOT all write: one ``ID.txt`` per video (``ID`` the
dataset's video id), one line per detection,

    frame, track_id, left, top, width, height, confidence[, class[, …]]

frames counted from 1, boxes in pixels of the video's frames. A track's label is ``--label NAME`` for every track
(single-class trackers, e.g. people), or the name of its most frequent class id in the 8th column, read from a
names file (``--classes``: one name per line, line i naming class i, as YOLO's and COCO's names lists).

Each DSG object gets at most one track: the longest unassigned track whose label names it — the same head noun
("sports ball" fits "red ball"), or ``person`` for a person's word ("man", "girl", "player", …). At each step's
first frame (``dysen.dsg.convert.align_steps_to_frames`` over the video's frames), and at the last frame, an
object of that step's scene graph gets its track's box there: the detection, or the linear interpolation of the
two nearest detections around a gap inside the track. Objects without a track get no boxes (the layout leaves
them out). Boxes are normalised to [0, 1] and clipped to the frame.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dysen.dsg import DynamicSceneGraph
from dysen.dsg.convert import align_steps_to_frames
from dysen.dsg.types import Box
from dysen.errors import DysenError

PERSON_WORDS = frozenset(
    "person people man men woman women boy boys girl girls child children kid kids baby lady guy player players "
    "rider skier surfer skater dancer runner athlete worker chef student teacher doctor police officer".split()
)
"""Head nouns a tracker's ``person`` class names."""


class TrackError(DysenError):
    """A tracker file that cannot be read, or options that cannot label its tracks."""


@dataclass
class Track:
    """One tracked object: its label and its boxes (pixels, x0 y0 x1 y1) by 0-based frame."""

    id: int
    label: str
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)

    def box_at(self, frame: int) -> tuple[float, float, float, float] | None:
        """The box at ``frame``: the detection, linearly interpolated across a gap inside the track, else None."""
        if frame in self.boxes:
            return self.boxes[frame]
        before = [f for f in self.boxes if f < frame]
        after = [f for f in self.boxes if f > frame]
        if not before or not after:
            return None
        a, b = max(before), min(after)
        share = (frame - a) / (b - a)
        return tuple(p + share * (q - p) for p, q in zip(self.boxes[a], self.boxes[b], strict=True))  # type: ignore[return-value]


def read_names(path: str | os.PathLike[str]) -> list[str]:
    """A class-names file: one name per line, line i naming class i (blank lines ignored)."""
    file = Path(path)
    if not file.is_file():
        raise TrackError(f"class names file {file} does not exist")
    names = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise TrackError(f"class names file {file} is empty")
    return names


def read_mot(
    path: str | os.PathLike[str],
    label: str | None = None,
    classes: list[str] | None = None,
    min_confidence: float = 0.0,
) -> list[Track]:
    """The tracks of a MOTChallenge results file; each labelled ``label``, or by its most frequent class id (8th
    column) in ``classes``. Detections under ``min_confidence`` (7th column) are left out."""
    if (label is None) == (classes is None):
        raise TrackError("label the tracks with one of --label NAME (every track) or --classes FILE (8th column)")
    file = Path(path)
    boxes: dict[int, dict[int, tuple[float, float, float, float]]] = {}
    votes: dict[int, Counter[int]] = {}
    with file.open(encoding="utf-8", newline="") as lines:
        for number, row in enumerate(csv.reader(lines), start=1):
            if not row or not "".join(row).strip():
                continue
            need = 8 if classes is not None else 6
            try:
                if len(row) < need:
                    raise ValueError(f"{len(row)} columns, {need} needed")
                frame, track = int(float(row[0])), int(float(row[1]))
                left, top, width, height = (float(v) for v in row[2:6])
                confidence = float(row[6]) if len(row) > 6 else 1.0
                kind = int(float(row[7])) if classes is not None else 0
            except ValueError as err:
                raise TrackError(f"{file}:{number}: not a MOTChallenge line ({err}): {','.join(row)[:80]}") from None
            if frame < 1 or width <= 0 or height <= 0:
                raise TrackError(f"{file}:{number}: frames count from 1 and boxes need a positive size")
            if confidence < min_confidence:
                continue
            if classes is not None and not 0 <= kind < len(classes):
                raise TrackError(f"{file}:{number}: class {kind} is not in the {len(classes)} class names")
            boxes.setdefault(track, {})[frame - 1] = (left, top, left + width, top + height)
            votes.setdefault(track, Counter())[kind] += 1
    return [
        Track(track, label if classes is None else classes[votes[track].most_common(1)[0][0]], found)
        for track, found in sorted(boxes.items())
    ]  # fmt: skip


def _head(name: str) -> str:
    words = name.lower().replace("_", " ").split()
    return words[-1] if words else ""


def fits(label: str, name: str) -> bool:
    """Whether a tracker's class ``label`` names the DSG object ``name``: the same head noun, or ``person`` for a
    person's word."""
    head, kind = _head(name), _head(label)
    return head == kind or (kind == "person" and head in PERSON_WORDS)


def match_tracks(dsg: DynamicSceneGraph, tracks: list[Track]) -> dict[str, Track]:
    """Each object of ``dsg`` (in order of first appearance) -> the longest unassigned track that fits it."""
    names = list(dict.fromkeys(name for graph in dsg.graphs for name in graph.objects))
    ranked = sorted(tracks, key=lambda t: (-len(t.boxes), t.id))
    taken: set[int] = set()
    matched = {}
    for name in names:
        for track in ranked:
            if track.id not in taken and fits(track.label, name):
                matched[name] = track
                taken.add(track.id)
                break
    return matched


@dataclass(frozen=True)
class BoxedDSG:
    """A DSG with boxes from tracks, and how many of its objects got a track."""

    dsg: DynamicSceneGraph
    boxed: int
    objects: int


def add_track_boxes(dsg: DynamicSceneGraph, tracks: list[Track], num_frames: int, width: int, height: int) -> BoxedDSG:
    """``dsg`` with boxes at each step's first frame and at the last frame of a ``num_frames`` video of
    ``width`` x ``height`` pixels, from the tracks matched to its objects (``match_tracks``); a DSG none of whose
    objects has a box comes back without boxes."""
    if num_frames < 1 or width < 1 or height < 1:
        raise TrackError(f"a video of {num_frames} frames of {width}x{height} has no frames to box")
    matched = match_tracks(dsg, tracks)
    alignment = align_steps_to_frames(dsg.num_steps, num_frames)
    keyframes = [first for first, _ in alignment.frames_of_step] + [num_frames - 1]
    graphs = [*dsg.graphs, dsg.graphs[-1]]  # boxes[M], at the last frame: the last step's objects
    boxes = []
    for frame, graph in zip(keyframes, graphs, strict=True):
        step_boxes = []
        for name in graph.objects:
            track = matched.get(name)
            box = track.box_at(frame) if track is not None else None
            if box is not None:
                step_boxes.append(_normalised(name, box, width, height))
        boxes.append(tuple(step_boxes))
    names = {name for graph in dsg.graphs for name in graph.objects}
    if not any(boxes):
        bare = DynamicSceneGraph.from_dict({**dsg.to_dict(), "boxes": None, "layout_source": None})
        return BoxedDSG(bare, 0, len(names))
    keyframes = [[box.model_dump() for box in step] for step in boxes]
    updated = DynamicSceneGraph.from_dict({**dsg.to_dict(), "boxes": keyframes, "layout_source": "given"})
    return BoxedDSG(updated, len(matched), len(names))


def _normalised(name: str, box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    clip = lambda value, size: min(max(value / size, 0.0), 1.0)  # noqa: E731
    return Box(object=name, x0=clip(x0, width), y0=clip(y0, height), x1=clip(x1, width), y1=clip(y1, height))
