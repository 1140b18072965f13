"""Layout imagination for everyday scenes (issue 24 §2): boxes for plans whose objects are not Dynamic Shapes shapes.

What LVD's LLM writes per frame, imagined without an LLM from the plan's canonical motions (``Event.motion``):

* sizes: each object's category (``NOUNS`` -> ``CATEGORIES``: a person is half the frame tall, a dog a fifth, a
  ball a few hundredths; "small" / "big" scale it), with a default for unknown nouns;
* placement: ground things (people, animals, vehicles, balls) stand on a ground line, background things (trees,
  houses) a little further back, flying things (birds, planes) high up; each layer is packed left to right in
  order of mention, then shifted by a seeded draw among the shifts that keep every motion in frame (motions are
  shortened when nothing fits; overlaps happen only when the objects alone are wider than the frame);
* motion over each event's steps: a move shifts the box ('forward' is the plan's heading, one seeded side for
  every object, so a man and the dog he walks go the same way; the direct object of a travel goes along),
  'toward' / 'away' scale it and lower / raise it (toward the event's target instead when it is on screen), a
  jump lifts and lands, 'up' lifts, 'down' lands a flying thing or lays a standing one down, grow / shrink scale
  it, an appear with a side enters from off screen (else fades in), a disappear with a side walks off (else fades
  out), a throw's target is held at the thrower's hand until the throw, then flies an arc and lands; rotate,
  change_colour, still and unknown leave the box where it is.

Keyframes are those of ``DynamicSceneGraph.boxes``: one at each step's start and one at the end (time M); an
object gets a box where it is visible and named by that step's scene graph. Deterministic given the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dysen.dsg.types import Box, DynamicSceneGraph, Event
from dysen.world import vocab

Layer = Literal["ground", "back", "air"]


@dataclass(frozen=True)
class Category:
    """How big a kind of object is drawn and where it stands."""

    height: float
    """Box height, as a fraction of the frame height."""
    aspect: float
    """Box width / height."""
    layer: Layer = "ground"
    """Stands on the ground line, a little further back, or flies in the upper frame."""
    mobile: bool = True
    """Goes along with an agent that travels with it as its direct object ("walks his dog", "pushes a cart")."""


CATEGORIES: dict[str, Category] = {
    "person": Category(0.5, 0.4), "child": Category(0.34, 0.45), "dog": Category(0.2, 1.4),
    "cat": Category(0.14, 1.3), "horse": Category(0.42, 1.3), "cow": Category(0.36, 1.5), "car": Category(0.24, 2.1),
    "bus": Category(0.38, 2.4), "bike": Category(0.24, 1.6), "ball": Category(0.07, 1.0),
    "bird": Category(0.08, 1.4, "air"), "plane": Category(0.12, 2.5, "air"), "kite": Category(0.1, 0.9, "air"),
    "cloud": Category(0.12, 2.2, "air", mobile=False), "tree": Category(0.7, 0.6, "back", mobile=False),
    "house": Category(0.5, 1.2, "back", mobile=False), "bench": Category(0.14, 2.2, mobile=False),
    "table": Category(0.22, 1.6, mobile=False), "chair": Category(0.26, 0.6, mobile=False),
    "box": Category(0.14, 1.2), "thing": Category(0.2, 1.0),
}  # fmt: skip
DEFAULT_CATEGORY = "thing"

NOUNS: dict[str, str] = {
    **dict.fromkeys("man woman person people lady guy gentleman girl boy player runner jogger cyclist rider "
                    "driver dancer chef worker student teacher farmer soldier mother father".split(), "person"),
    **dict.fromkeys("child kid baby toddler".split(), "child"),
    **dict.fromkeys("dog puppy wolf fox".split(), "dog"), **dict.fromkeys("cat kitten rabbit".split(), "cat"),
    **dict.fromkeys("horse deer pony".split(), "horse"), **dict.fromkeys("cow sheep goat bear".split(), "cow"),
    **dict.fromkeys("car taxi truck van jeep".split(), "car"), **dict.fromkeys("bus train tram".split(), "bus"),
    **dict.fromkeys("bike bicycle motorcycle scooter".split(), "bike"),
    **dict.fromkeys("ball frisbee stone rock apple toy".split(), "ball"),
    **dict.fromkeys("bird eagle duck pigeon butterfly bee".split(), "bird"),
    **dict.fromkeys("plane airplane aeroplane helicopter drone".split(), "plane"),
    "kite": "kite", "balloon": "kite", "cloud": "cloud",
    **dict.fromkeys("tree trees bush".split(), "tree"),
    **dict.fromkeys("house building shop church barn".split(), "house"),
    **dict.fromkeys("bench sofa couch bed".split(), "bench"), **dict.fromkeys("table desk".split(), "table"),
    "chair": "chair", **dict.fromkeys("box bag suitcase cart".split(), "box"),
}  # fmt: skip
"""Nouns -> ``CATEGORIES`` keys (the last known word of an object's name decides; a plural 's' is dropped)."""

SCENERY = frozenset(
    "camera viewer scene screen frame picture shot ground floor grass field road street park sky air rain snow "
    "wind distance background foreground left right top bottom side edge water sea beach".split()
)
"""Names that are no object to box (places, the camera, the weather)."""

GROUND = 0.92
"""The ground line (y of the bottom of a standing object)."""
BACK = 0.8
"""Where background things (trees, houses) stand."""
SKY = 0.08
"""The top of flying things."""
GAP = 0.03
"""Space between neighbours of a layer."""
MARGIN = 0.02
"""Space kept to the frame's edges."""
TRAVEL = 0.1
"""Frame widths a move covers per step (at most ``MAX_TRAVEL`` per event)."""
MAX_TRAVEL = 0.5
DEPTH = 1.5
"""Scale of a move toward the camera (its inverse: away)."""
THROW = 0.45
"""Frame widths a thrown object flies."""
_SIZE_WORDS = {"small": 0.7, "little": 0.7, "tiny": 0.5, "big": 1.3, "large": 1.3, "huge": 1.6}


@dataclass
class _Track:
    """One object's pose at each keyframe (times 0..M), relative to its slot until the layer is shifted."""

    name: str
    category: Category
    w: float
    h: float
    cx: float = 0.0
    bottom: float = 0.0
    dx: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    visible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    free: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Keyframes where the object may be off screen (entering, leaving, thrown): left out of the fit."""
    held_by: str | None = None
    """The thrower whose hand holds it until ``held_until`` (a thrown object)."""
    held_until: int = 0
    flight: tuple[Event, str, float] | None = None
    """The throw that sends it flying: (event, side, amount)."""
    edges: list[tuple[str, np.ndarray]] = field(default_factory=list)
    """Frame edges it crosses (entering or leaving), with how far off screen it is per keyframe (0..1)."""


def category_of(name: str) -> Category:
    """The category of an object's name (its last known noun), else the default."""
    for word in reversed(name.lower().split()):
        for form in (word, word.removesuffix("s"), word.removesuffix("es")):
            if form in NOUNS:
                return CATEGORIES[NOUNS[form]]
    return CATEGORIES[DEFAULT_CATEGORY]


def scene_objects(dsg: DynamicSceneGraph) -> list[str]:
    """The plan's objects to box, in order of mention (no colour nodes, no scenery such as 'camera')."""
    mentioned = [n for g in dsg.graphs for n in g.objects] + [e.agent for e in dsg.events]
    return [n for n in dict.fromkeys(mentioned) if n not in vocab.PAINTS and n.lower() not in SCENERY]


def imagine_scene(dsg: DynamicSceneGraph, seed: int = 0) -> DynamicSceneGraph:
    """``dsg`` with boxes imagined for an everyday scene (module docstring), ``layout_source='imagined-scene'``."""
    names = scene_objects(dsg)
    if not names:
        return dsg
    rng = np.random.default_rng(seed)
    heading = "right" if rng.random() < 0.5 else "left"
    events = sorted((e for e in dsg.events if e.motion is not None), key=lambda e: (e.start, e.end))
    tracks = _simulate(dsg, names, events, heading, travel=1.0)
    if not _fits(tracks):
        tracks = _simulate(dsg, names, events, heading, travel=_travel_that_fits(tracks))
    shifts = {layer: _shift(tracks, layer, rng) for layer in ("ground", "back", "air")}
    for track in tracks.values():
        track.cx += shifts[track.category.layer]
    keyframes = [_keyframe(dsg, tracks, t) for t in range(dsg.num_steps + 1)]
    return dsg.model_copy(update={"boxes": tuple(keyframes), "layout_source": "imagined-scene"})


def _simulate(
    dsg: DynamicSceneGraph, names: list[str], events: list[Event], heading: str, travel: float
) -> dict[str, _Track]:
    """Slots, then every event's motion applied over its steps (``travel`` scales the moves)."""
    times = dsg.num_steps + 1
    said = {a.object: a.attribute for g in dsg.graphs for a in g.attributes if a.attribute in _SIZE_WORDS}
    tracks = {name: _track(name, said.get(name), times) for name in names}
    _hold_thrown(tracks, events)
    _slots(tracks)
    for event in events:
        if event.agent in tracks:
            _apply(tracks, event, heading, travel, times)
    return tracks


def _track(name: str, size: str | None, times: int) -> _Track:
    category = category_of(name)
    scale = _SIZE_WORDS.get(size or "", 1.0) * next((_SIZE_WORDS[w] for w in name.lower().split() if w in _SIZE_WORDS),
                                                    1.0)  # fmt: skip
    h = min(category.height * scale, 0.8)
    w, zeros, ones = min(h * category.aspect, 0.8), np.zeros(times), np.ones(times)
    return _Track(name, category, w, h, dx=zeros, dy=zeros.copy(), sw=ones, sh=ones.copy(),
                  visible=np.ones(times, bool), free=np.zeros(times, bool))  # fmt: skip


def _hold_thrown(tracks: dict[str, _Track], events: list[Event]) -> None:
    """A thrown object rests in its thrower's hand until the throw (if it does nothing itself before)."""
    for event in events:
        target = tracks.get(event.target or "")
        if event.motion.kind != "throw" or target is None or event.agent not in tracks or target.held_by:
            continue
        if not any(e.agent == target.name and e.start < event.start for e in events):
            target.held_by, target.held_until = event.agent, event.start


def _slots(tracks: dict[str, _Track]) -> None:
    """Each layer's objects side by side from x = 0 in order of mention (held objects take no slot)."""
    for layer, bottom in (("ground", GROUND), ("back", BACK), ("air", None)):
        x = 0.0
        for track in tracks.values():
            if track.category.layer != layer or track.held_by:
                continue
            track.cx, track.bottom = x + track.w / 2, bottom if bottom is not None else SKY + track.h
            x += track.w + GAP


def _progress(event: Event, times: int) -> np.ndarray:
    """Per keyframe, how far the event has got: 0 up to its start, 1 from its end."""
    return np.clip((np.arange(times) - event.start) / (event.end - event.start), 0.0, 1.0)


def _apply(tracks: dict[str, _Track], event: Event, heading: str, travel: float, times: int) -> None:
    """Add one event's motion to its agent's track (and to its target's, for travels and throws)."""
    track, motion, p = tracks[event.agent], event.motion, _progress(event, times)
    amount = 1.0 if motion.amount is None else motion.amount
    side = heading if motion.direction == "forward" else motion.direction
    if motion.kind == "move" and side in ("left", "right"):
        dx = min(TRAVEL * (event.end - event.start), MAX_TRAVEL) * amount * travel * (1 if side == "right" else -1)
        track.dx += dx * p
        follower = tracks.get(event.target or "")
        if follower is not None and follower.category.mobile and not follower.held_by and _direct(event):
            follower.dx += dx * p
    elif motion.kind == "move" and side in ("toward", "away"):
        _depth(tracks, track, event, side, amount, p)
    elif motion.kind == "move" and side == "up":
        top = track.bottom + track.dy[event.start] - track.h * track.sh[event.start]
        track.dy -= max(0.0, min(0.3 * amount, top - MARGIN)) * p
    elif motion.kind == "move" and side == "down":
        _fall(track, event, p)
    elif motion.kind == "jump":
        track.dy -= max(0.15, 0.6 * track.h) * amount * np.sin(math.pi * p)
    elif motion.kind in ("grow", "shrink"):
        factor = (1.5 if motion.kind == "grow" else 1 / 1.5) ** amount
        track.sw *= factor**p
        track.sh *= factor**p
    elif motion.kind in ("appear", "disappear"):
        _cross(track, motion.kind, _edge(motion.direction, heading, motion.kind), p, event.end)
    elif motion.kind == "throw":
        _throw(tracks, event, side or "forward", amount, p)


def _edge(direction: str | None, heading: str, kind: str) -> str | None:
    """The frame edge an appear enters by / a disappear leaves by: the side named, or for 'forward' the one behind
    (entering) or ahead of (leaving) the plan's heading; None: it fades in or out."""
    if direction == "forward":
        back = "left" if heading == "right" else "right"
        return back if kind == "appear" else heading
    return direction if direction in ("left", "right") else None


def _cross(track: _Track, kind: str, edge: str | None, p: np.ndarray, end: int) -> None:
    """Entering (off screen until the event starts, at its slot when it ends) or leaving (gone after it ends)."""
    times = np.arange(len(p))
    if kind == "appear":
        track.visible &= p > 0
        if edge is not None:
            track.edges.append((edge, 1 - p))
            track.free |= p < 1
    else:
        track.visible &= p < 1 if edge is None else times <= end
        if edge is not None:
            track.edges.append((edge, p))
            track.free |= p > 0


def _direct(event: Event) -> bool:
    """The target is the direct object of the predicate ("walks his dog"), not a place ("walks to the car")."""
    preps = {"to", "toward", "towards", "into", "onto", "past", "by", "across", "through", "around", "over", "at",
             "from", "with", "after", "behind", "along", "off", "on", "in"}  # fmt: skip
    return not preps & set(event.predicate.lower().split())


def _depth(tracks: dict[str, _Track], track: _Track, event: Event, side: str, amount: float, p: np.ndarray) -> None:
    """Toward / away from the event's target when it is on screen (a horizontal move), else from the camera."""
    target = tracks.get(event.target or "")
    s = event.start
    if target is not None and target is not track and not target.held_by:
        gap = (target.cx + target.dx[s]) - (track.cx + track.dx[s])
        reach = (track.w * track.sw[s] + target.w * target.sw[s]) / 2 + GAP
        dx = gap - math.copysign(reach, gap) if abs(gap) > reach else 0.0
        track.dx += (dx if side == "toward" else -math.copysign(min(MAX_TRAVEL, 0.25), gap)) * amount * p
        return
    factor = (DEPTH if side == "toward" else 1 / DEPTH) ** amount
    track.sw *= factor**p
    track.sh *= factor**p
    if track.category.layer != "air":
        track.dy += (0.05 if side == "toward" else -0.05) * amount * p  # nearer things stand lower


def _fall(track: _Track, event: Event, p: np.ndarray) -> None:
    """'down': a thing in the air lands on the ground line; a standing thing lies down."""
    s = event.start
    bottom = track.bottom + track.dy[s]
    if bottom < GROUND - 0.05 and track.category.layer != "back":
        track.dy += (GROUND - bottom) * p
        return
    lying = track.h * track.sh[s] / max(track.w * track.sw[s], 1e-6)
    if lying > 1:  # tall things topple: the box turns on its side
        track.sw *= lying**p
        track.sh /= lying**p


def _throw(tracks: dict[str, _Track], event: Event, side: str, amount: float, p: np.ndarray) -> None:
    """The target leaves the thrower's hand at the throw's start and flies an arc towards ``side``."""
    ball, thrower = tracks.get(event.target or ""), tracks[event.agent]
    if ball is None or ball is thrower:
        return
    ball.free |= p > 0
    ball.flight = (event, side, amount)


def _hand(holder: _Track, t: int, heading: int) -> tuple[float, float]:
    """Where a held object's centre is: at the holder's side, at hand height."""
    w, h = holder.w * holder.sw[t], holder.h * holder.sh[t]
    return holder.cx + holder.dx[t] + heading * 0.45 * w, holder.bottom + holder.dy[t] - 0.5 * h


def _fits(tracks: dict[str, _Track]) -> bool:
    return all(_room(tracks, layer) >= 0 for layer in ("ground", "back", "air"))


def _extent(tracks: dict[str, _Track], layer: str) -> tuple[float, float]:
    """The leftmost and rightmost x a layer's tracked boxes reach where they must stay in frame (slot x from 0)."""
    lo, hi = math.inf, -math.inf
    for track in tracks.values():
        if track.category.layer != layer or track.held_by:
            continue
        keep = track.visible & ~track.free
        half = track.w * track.sw / 2
        if keep.any():
            lo = min(lo, float(np.min((track.cx + track.dx - half)[keep])))
            hi = max(hi, float(np.max((track.cx + track.dx + half)[keep])))
    return lo, hi


def _room(tracks: dict[str, _Track], layer: str) -> float:
    lo, hi = _extent(tracks, layer)
    return 0.0 if lo == math.inf else (1 - 2 * MARGIN) - (hi - lo)


def _travel_that_fits(tracks: dict[str, _Track]) -> float:
    """The share of every move's distance that lets the widest layer fit (moves shortened together)."""
    worst = 1.0
    for layer in ("ground", "back", "air"):
        lo, hi = _extent(tracks, layer)
        if lo == math.inf:
            continue
        still = sum(t.w + GAP for t in tracks.values() if t.category.layer == layer and not t.held_by) - GAP
        moving = (hi - lo) - still
        if moving > 0:
            worst = min(worst, max(0.0, (1 - 2 * MARGIN - still) / moving))
    return worst


def _shift(tracks: dict[str, _Track], layer: str, rng: np.random.Generator) -> float:
    """A seeded shift of the layer among those that keep it in frame (centred when none does)."""
    lo, hi = _extent(tracks, layer)
    if lo == math.inf:
        return 0.5
    least, most = MARGIN - lo, 1 - MARGIN - hi
    return float(rng.uniform(least, most)) if most > least else (least + most) / 2


def _keyframe(dsg: DynamicSceneGraph, tracks: dict[str, _Track], t: int) -> tuple[Box, ...]:
    """The boxes at time ``t`` of the objects visible then and named by that step's scene graph."""
    shown = dsg.graphs[min(t, dsg.num_steps - 1)].objects
    boxes = []
    for track in tracks.values():
        if track.name not in shown or not track.visible[t]:
            continue
        cx, bottom = _pose(tracks, track, t)
        w, h = track.w * track.sw[t], track.h * track.sh[t]
        box = _clipped(track.name, cx - w / 2, bottom - h, cx + w / 2, bottom)
        if box is not None:
            boxes.append(box)
    return tuple(boxes)


def _pose(tracks: dict[str, _Track], track: _Track, t: int) -> tuple[float, float]:
    """(centre x, bottom) of ``track`` at time ``t``: held, flying, entering / leaving, or where its motions put it."""
    flight = track.flight
    if track.held_by and (t <= track.held_until or flight is not None and t <= flight[0].start):
        holder = tracks[track.held_by]
        cx, cy = _hand(holder, t, _way(tracks, flight) or 1 if flight else 1)
        return cx, cy + track.h / 2
    if flight is not None and t > flight[0].start:
        return _flying(tracks, track, t, flight)
    return _edges(track, t)


def _flying(tracks: dict[str, _Track], track: _Track, t: int, flight: tuple) -> tuple[float, float]:
    """An arc from the thrower's hand: ``THROW`` frame widths sideways (or straight up), landing on the ground line."""
    event, _, amount = flight
    way = _way(tracks, flight)
    start_x, start_y = _hand(tracks[event.agent], event.start, way or 1)
    p = min(1.0, (t - event.start) / (event.end - event.start))
    end_y = GROUND if track.category.layer == "ground" else start_y
    x = start_x + way * THROW * amount * p
    y = start_y + (end_y - start_y) * p - 0.3 * amount * math.sin(math.pi * p)
    return x, y + track.h / 2


def _way(tracks: dict[str, _Track], flight: tuple[Event, str, float]) -> int:
    """+1 / -1 for a throw to the right / left, 0 straight up; an undirected throw goes where the frame is wider."""
    event, side, _ = flight
    if side in ("left", "right", "up"):
        return {"right": 1, "left": -1, "up": 0}[side]
    thrower = tracks[event.agent]
    return 1 if thrower.cx + thrower.dx[event.start] < 0.5 else -1


def _edges(track: _Track, t: int) -> tuple[float, float]:
    """Where the motions put it; while entering or leaving, slid towards the frame edge it crosses."""
    cx, bottom = track.cx + track.dx[t], track.bottom + track.dy[t]
    for edge, weight in track.edges:
        off = -track.w if edge == "left" else 1 + track.w
        cx += (off - cx) * weight[t]
    return cx, bottom


def _clipped(name: str, x0: float, y0: float, x1: float, y1: float) -> Box | None:
    """The part of the box inside the frame; None when less than a sliver shows."""
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0)
    if x1 - x0 < 0.01 or y1 - y0 < 0.01:
        return None
    return Box(object=name, x0=round(x0, 4), y0=round(y0, 4), x1=round(x1, 4), y1=round(y1, 4))

