"""The dynamic scene graph (DSG) data model (Dysen-VDM §3.2; dysen_spec.md §2–§3).

A DSG is what every part of dysen speaks:

* ``Event`` — one action of Step I, "(agent, predicate, target, (start v, end v))", with integer
  times in the paper's abstract unit v. Spans are half-open, ``[start, end)``.
* ``SceneGraph`` — objects, attributes ``(object, attribute)`` and relations
  ``(subject, predicate, object)`` at one time step.
* ``DynamicSceneGraph`` — the events plus one scene graph per time step (Step II output, enriched by
  Step III), and optionally one bounding box per visible object per step, for layout grounding.

Pure Python (pydantic only): this module must never import torch. Every model is frozen, validates
itself on construction, and round-trips through JSON; ``dsg_json_schema()`` is the schema an LLM's
structured output is held to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dysen.errors import DSGError

if TYPE_CHECKING:
    from dysen.dsg.convert import FrameAlignment

SCHEMA_VERSION = 2
"""Bumped whenever the JSON layout changes; readers refuse versions they do not know. Version 2 (issue 24) added
``DynamicSceneGraph.layout_source``, the motion kind 'throw', the directions 'toward', 'away' and 'forward', and
directions on 'appear' / 'disappear'; a version-1 file is a valid version-2 one and loads as such."""
READABLE_VERSIONS = (1, 2)
"""The schema versions this dysen reads (older ones are upgraded on load)."""



@dataclass(frozen=True)
class DSGLimits:
    """How large a DSG may be: generous for every real plan (Dynamic Shapes: 1-3 events, 8 steps, 3 shapes; the
    LLM planner: at most 32 steps by default), small enough that validating, drawing and laying one out stays fast
    and bounded in memory. Enforced on construction, so every reader (JSON, JSONL, tuple text, the planner, the
    demo) refuses a larger DSG with a ``DSGError`` naming the bound; exported in ``dsg_json_schema()``."""

    max_steps: int = 256
    """Time steps (scene graphs): an LLM's "(0v, 1000000v)" is an error, not a million graphs."""
    max_events: int = 256
    """Events (Step I actions)."""
    max_objects_per_graph: int = 64
    """Objects in one scene graph (and boxes at one step)."""
    max_objects: int = 256
    """Distinct object names over the whole DSG (graphs and event agents)."""
    max_facts_per_graph: int = 1024
    """Attributes plus relations in one scene graph."""
    max_facts: int = 16384
    """Attributes plus relations over all the scene graphs together."""
    max_label_chars: int = 100
    """Characters in one label (an object, attribute, predicate or agent name), after whitespace is collapsed."""


LIMITS = DSGLimits()
"""The bounds every DSG is held to."""

MAX_STEPS = LIMITS.max_steps
"""The most time steps a DSG may have (``DSGLimits.max_steps``)."""


def _label(value: str) -> str:
    """Normalise a node label: collapse whitespace; labels may not be empty or longer than ``max_label_chars``."""
    label = " ".join(value.split())
    if not label:
        raise ValueError("labels must be non-empty text")
    if len(label) > LIMITS.max_label_chars:
        raise ValueError(
            f"label {label[:40]!r}… has {len(label)} characters; the limit is {LIMITS.max_label_chars} "
            "(DSGLimits.max_label_chars): shorten it"
        )
    return label


def _at_most(count: int, limit: int, what: str, bound: str) -> None:
    """``ValueError`` naming ``bound`` when ``count`` is over ``limit``."""
    if count > limit:
        raise ValueError(f"{what} has {count}; the limit is {limit} (DSGLimits.{bound}): make the plan smaller")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


MotionKind = Literal["move", "jump", "grow", "shrink", "rotate", "appear", "disappear", "change_colour", "still",
                     "unknown", "throw"]  # fmt: skip
MotionDirection = Literal["left", "right", "up", "down", "toward", "away", "forward"]
MOTION_KINDS: tuple[str, ...] = get_args(MotionKind)
"""The canonical motion kinds (``Motion.kind``): the Dynamic Shapes actions, 'still', 'unknown', and 'throw' (the
agent sends its target flying)."""
MOTION_DIRECTIONS: tuple[str, ...] = get_args(MotionDirection)
"""The directions of a motion (``Motion.direction``): on the screen, toward / away from the camera, or 'forward'
(the way the object is heading: the layout picks the side with more room)."""
DIRECTED_KINDS: tuple[str, ...] = ("move", "appear", "disappear", "throw")
"""The kinds that may have a direction: a move needs one; an appear enters from that side, a disappear leaves to it,
a throw sends its target that way."""
LayoutSource = Literal["given", "llm", "imagined-shapes", "imagined-scene"]
"""Where a DSG's boxes came from (``DynamicSceneGraph.layout_source``)."""


class Motion(_Frozen):
    """The canonical motion of an event, whatever words its predicate uses ("slides to the left" -> move left).

    Set by one normaliser (``dysen.planner.motion.canonical_motion``) that every plan passes through."""

    kind: MotionKind = Field(description="move, jump, grow, shrink, rotate, appear, disappear, change_colour, "
                             "still (no motion), unknown (a predicate the normaliser could not read) or throw (the "
                             "agent throws or kicks its target).")  # fmt: skip
    direction: MotionDirection | None = Field(
        default=None,
        description="For 'move' (required): left, right, up, down, toward or away (from the camera) or forward (the "
        "way it heads); for appear / disappear / throw (optional): the side it enters from, leaves to, throws to.",
    )
    amount: float | None = Field(
        default=None, allow_inf_nan=False,
        description="Optional: how much, in [0, 1], e.g. 0.5 for 'a bit'; null: the usual amount.",
    )  # fmt: skip

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: float | None) -> float | None:
        """In [0, 1] (checked here, not as schema bounds, which strict structured output refuses)."""
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"a motion's amount is in [0, 1], got {value}")
        return value

    @model_validator(mode="after")
    def _direction(self) -> Motion:
        if self.kind == "move" and self.direction is None:
            raise ValueError("a 'move' motion needs a direction (left, right, up or down)")
        if self.kind not in DIRECTED_KINDS and self.direction is not None:
            raise ValueError(f"only a 'move', 'appear', 'disappear' or 'throw' motion has a direction, not "
                             f"{self.kind!r}")  # fmt: skip
        return self

    @property
    def action(self) -> str:
        """The Dynamic Shapes action name ('move_left', 'jump', …, 'change_colour'), or 'still' / 'unknown' / 'throw'
        ('move_toward' and 'move_forward' are no Dynamic Shapes action; an appear's side is not part of its action)."""
        return f"move_{self.direction}" if self.kind == "move" else self.kind

    def to_text(self) -> str:
        """``move left``, ``jump``, ``grow 0.5``: the words the tuple text format writes in brackets."""
        words = [self.kind] + ([self.direction] if self.direction else [])
        if self.amount is not None:
            words.append(repr(self.amount))
        return " ".join(words)

    @classmethod
    def from_text(cls, text: str) -> Motion:
        """The inverse of ``to_text`` ("move left", "grow 0.5"); ``ValueError`` for anything else."""
        words = text.split()
        amount = None
        if words and re.fullmatch(r"\d+(?:\.\d+)?(?:e-?\d+)?", words[-1]):
            amount = float(words.pop())
        if not 1 <= len(words) <= 2:
            raise ValueError(f"a motion is written 'kind [direction] [amount]', got {text!r}")
        return cls(kind=words[0].lower(), direction=words[1].lower() if len(words) == 2 else None, amount=amount)


class Event(_Frozen):
    """One planned action: ``agent`` does ``predicate`` (to ``target``) during ``[start, end)`` in units v."""

    agent: str = Field(description="Who or what performs the action, e.g. 'red circle'.")
    predicate: str = Field(description="The action, e.g. 'moves right', 'throws'.")
    target: str | None = Field(default=None, description="What the action is done to, or null when intransitive.")
    start: int = Field(ge=0, description="Start time in units of the basic interval v (inclusive).")
    end: int = Field(ge=1, le=MAX_STEPS, description="End time in units of v (exclusive); end > start.")
    motion: Motion | None = Field(
        default=None,
        description="Optional: the canonical motion of the predicate (kind, direction, amount); the planner fills it.",
    )

    @field_validator("agent", "predicate")
    @classmethod
    def _labels(cls, value: str) -> str:
        return _label(value)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else _label(value)

    @model_validator(mode="after")
    def _span(self) -> Event:
        if self.end <= self.start:
            raise ValueError(f"event span must have end > start, got ({self.start}v, {self.end}v)")
        return self

    @property
    def triplet(self) -> tuple[str, str, str | None]:
        return (self.agent, self.predicate, self.target)


class Attribute(_Frozen):
    """``(object, attribute)``: an attribute node attached to an object, e.g. ``(circle, red)``."""

    object: str
    attribute: str

    @field_validator("object", "attribute")
    @classmethod
    def _labels(cls, value: str) -> str:
        return _label(value)

    def as_tuple(self) -> tuple[str, str]:
        return (self.object, self.attribute)


class Relation(_Frozen):
    """``(subject, predicate, object)``: a relation node between two objects, e.g. ``(circle, left of, square)``."""

    subject: str
    predicate: str
    object: str

    @field_validator("subject", "predicate", "object")
    @classmethod
    def _labels(cls, value: str) -> str:
        return _label(value)

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.subject, self.predicate, self.object)


class SceneGraph(_Frozen):
    """The scene at one time step. Every name an attribute or relation uses is one of ``objects``."""

    objects: tuple[str, ...] = Field(default=(), max_length=LIMITS.max_objects_per_graph)
    attributes: tuple[Attribute, ...] = Field(default=(), max_length=LIMITS.max_facts_per_graph)
    relations: tuple[Relation, ...] = Field(default=(), max_length=LIMITS.max_facts_per_graph)

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        """Count the raw lists before any item is validated, so an oversized graph is refused at once."""
        if isinstance(data, dict):
            _at_most(_length(data.get("objects")), LIMITS.max_objects_per_graph, "a scene graph's objects list",
                     "max_objects_per_graph")  # fmt: skip
            facts = _length(data.get("attributes")) + _length(data.get("relations"))
            _at_most(facts, LIMITS.max_facts_per_graph, "a scene graph's attributes and relations",
                     "max_facts_per_graph")  # fmt: skip
        return data

    @field_validator("objects")
    @classmethod
    def _objects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(_label(v) for v in value)
        if len(set(names)) != len(names):
            raise ValueError(f"object names must be unique within a scene graph, got {list(names)}")
        return names

    @field_validator("attributes", "relations")
    @classmethod
    def _facts_once(cls, value: tuple) -> tuple:
        """A fact is stated at most once: repeats are dropped, first occurrences keep their order."""
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _closed(self) -> SceneGraph:
        known = set(self.objects)
        used = [a.object for a in self.attributes]
        used += [n for r in self.relations for n in (r.subject, r.object)]
        missing = sorted(set(used) - known)
        if missing:
            raise ValueError(f"scene graph refers to objects not in its object list: {missing}")
        return self

    @classmethod
    def from_facts(
        cls,
        relations: list[tuple[str, str, str]] | tuple = (),
        attributes: list[tuple[str, str]] | tuple = (),
        objects: list[str] | tuple = (),
    ) -> SceneGraph:
        """Build a graph from plain tuples; objects are collected in order of first mention, duplicates dropped."""
        rels = [Relation(subject=s, predicate=p, object=o) for s, p, o in relations]
        attrs = [Attribute(object=o, attribute=a) for o, a in attributes]
        names = list(objects) + [n for r in rels for n in (r.subject, r.object)] + [a.object for a in attrs]
        return cls(
            objects=tuple(dict.fromkeys(_label(n) for n in names)),
            attributes=tuple(dict.fromkeys(attrs)),
            relations=tuple(dict.fromkeys(rels)),
        )

    def facts(self) -> set[tuple[str, ...]]:
        """All relation triplets and attribute pairs as tuples: the units triplet metrics count."""
        return {r.as_tuple() for r in self.relations} | {a.as_tuple() for a in self.attributes}

    def merged(self, other: SceneGraph) -> SceneGraph:
        """This graph plus every object, attribute and relation of ``other`` (order kept, no duplicates);
        ``DSGError`` when together they pass a ``DSGLimits`` bound."""
        try:
            return SceneGraph(
                objects=tuple(dict.fromkeys(self.objects + other.objects)),
                attributes=tuple(dict.fromkeys(self.attributes + other.attributes)),
                relations=tuple(dict.fromkeys(self.relations + other.relations)),
            )
        except ValidationError as err:
            raise DSGError(f"the merged scene graph is too large: {describe_error(err)}") from None


class Box(_Frozen):
    """An axis-aligned box of one object, normalised to [0, 1] image coordinates (x right, y down).

    ``angle`` is the object's clockwise turn from its upright pose, in radians and unwrapped (a shape that
    has turned one and a half times reads 3π); the box is the tight box of the turned object.
    """

    object: str
    x0: float = Field(ge=0.0, le=1.0)
    y0: float = Field(ge=0.0, le=1.0)
    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)
    angle: float = Field(default=0.0, allow_inf_nan=False)

    @field_validator("object")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > LIMITS.max_label_chars:
            _label(value)  # the label's own error, when collapsing whitespace does not bring it within bounds
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box of {self.object!r} needs x0 <= x1 and y0 <= y1")
        return self


class DynamicSceneGraph(_Frozen):
    """Events (Step I) plus one scene graph per time step (Steps II–III), optionally with boxes per step.

    Boxes are keyframes at the step boundaries: ``boxes[m]`` (m < M) the objects visible at step m's first
    frame, and an optional ``boxes[M]`` those at the last frame (where the last step ends), so that a layout
    can show how the clip's last actions land (``dysen.dsg.layout``).
    """

    schema_version: int = SCHEMA_VERSION
    events: tuple[Event, ...] = Field(default=(), max_length=LIMITS.max_events)
    graphs: tuple[SceneGraph, ...] = Field(
        min_length=1, max_length=LIMITS.max_steps, description="One scene graph per time step, in order."
    )
    boxes: tuple[tuple[Box, ...], ...] | None = Field(
        default=None,
        description="Optional: for each time step, the boxes of the objects visible at its first frame; "
        "optionally one more entry, the boxes at the last frame.",
    )
    layout_source: LayoutSource | None = Field(
        default=None,
        description="Where the boxes came from: given (with the plan), llm (the planner's layout step), "
        "imagined-shapes / imagined-scene (dysen.planner.layout); null: not recorded, or no boxes.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        """Count the raw lists before any item is validated, so an oversized DSG is refused at once."""
        if isinstance(data, dict):
            _at_most(_length(data.get("events")), LIMITS.max_events, "the events list", "max_events")
            _at_most(_length(data.get("graphs")), LIMITS.max_steps, "the graphs list (time steps)", "max_steps")
            _at_most(_length(data.get("boxes")), LIMITS.max_steps + 1, "the boxes list", "max_steps")
        return data

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value not in READABLE_VERSIONS:
            readable = ", ".join(map(str, READABLE_VERSIONS))
            raise ValueError(f"unsupported DSG schema_version {value}; this dysen reads versions {readable}")
        return SCHEMA_VERSION  # an older file is a valid file of this version

    @model_validator(mode="after")
    def _consistent(self) -> DynamicSceneGraph:
        names = {n for g in self.graphs for n in g.objects} | {e.agent for e in self.events}
        _at_most(len(names), LIMITS.max_objects, "the DSG's distinct object names", "max_objects")
        facts = sum(len(g.attributes) + len(g.relations) for g in self.graphs)
        _at_most(facts, LIMITS.max_facts, "the DSG's attributes and relations in all", "max_facts")
        for boxes in self.boxes or ():
            _at_most(len(boxes), LIMITS.max_objects_per_graph, "one step's boxes", "max_objects_per_graph")
        late = [e for e in self.events if e.end > len(self.graphs)]
        if late:
            raise ValueError(
                f"event {late[0].triplet} ends at {late[0].end}v but there are only {len(self.graphs)} time steps"
            )
        if self.layout_source is not None and self.boxes is None:
            raise ValueError(f"layout_source is {self.layout_source!r} but the DSG has no boxes")
        if self.boxes is not None:
            if len(self.boxes) not in (len(self.graphs), len(self.graphs) + 1):
                raise ValueError(
                    f"boxes cover {len(self.boxes)} keyframes but there are {len(self.graphs)} graphs "
                    f"(one entry per step, and optionally one more for the last frame)"
                )
            graphs = (*self.graphs, self.graphs[-1])  # the last frame belongs to the last step
            for step, (boxes, graph) in enumerate(zip(self.boxes, graphs[: len(self.boxes)], strict=True)):
                unknown = sorted({b.object for b in boxes} - set(graph.objects))
                if unknown:
                    raise ValueError(f"step {step} has boxes for objects not in its scene graph: {unknown}")
        return self

    @property
    def num_steps(self) -> int:
        """M, the number of time steps (scene graphs)."""
        return len(self.graphs)

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any) -> DynamicSceneGraph:
        """Validate a parsed JSON value; any problem becomes a ``DSGError`` that names the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise DSGError(f"invalid dynamic scene graph: {describe_error(err)}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> DynamicSceneGraph:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DSGError(f"dynamic scene graph is not valid JSON: {err}") from None
        return cls.from_dict(data)

    # -- the other seams (implemented in sibling modules) ----------------------------------------

    @classmethod
    def from_events(cls, events: list[Event] | tuple[Event, ...]) -> DynamicSceneGraph:
        """Step II: build the per-step scene graphs of ``events`` (see ``dysen.dsg.convert``)."""
        from dysen.dsg.convert import events_to_dsg

        return events_to_dsg(events)

    def align(self, num_frames: int) -> FrameAlignment:
        """For each of ``num_frames`` video frames, the time step(s) active there (see ``dysen.dsg.convert``)."""
        from dysen.dsg.convert import align_steps_to_frames

        return align_steps_to_frames(self.num_steps, num_frames)

    def to_text(self) -> str:
        """The paper's tuple text format (see ``dysen.dsg.textfmt``)."""
        from dysen.dsg.textfmt import format_dsg

        return format_dsg(self)

    @classmethod
    def from_text(cls, text: str) -> DynamicSceneGraph:
        from dysen.dsg.textfmt import parse_dsg

        return parse_dsg(text)


def _length(value: Any) -> int:
    """The length of a raw list (0 for anything else: its own validation reports it)."""
    return len(value) if isinstance(value, (list, tuple)) else 0


def describe_error(err: ValidationError) -> str:
    """One line per pydantic error: ``where: what``."""
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def dsg_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``DynamicSceneGraph`` (for LLM structured output and external validators), with the
    ``DSGLimits`` as ``maxItems`` and, on every label, ``maxLength``.

    ``maxLength`` is added here rather than on the models because OpenAI's strict structured output refuses
    that keyword (the planner's schemas are built from the models); the models enforce it all the same."""
    schema = DynamicSceneGraph.model_json_schema()
    labels = {
        "Event": ("agent", "predicate", "target"),
        "Attribute": ("object", "attribute"),
        "Relation": ("subject", "predicate", "object"),
        "Box": ("object",),
        "SceneGraph": ("objects",),
    }
    for model, fields in labels.items():
        for field in fields:
            _limit_strings(schema["$defs"][model]["properties"][field])
    return schema


def _limit_strings(node: dict[str, Any]) -> None:
    """Add ``maxLength`` to every string type in a property's schema (its items and ``anyOf`` branches too)."""
    if node.get("type") == "string":
        node["maxLength"] = LIMITS.max_label_chars
    for child in (node.get("items"), *node.get("anyOf", ())):
        if isinstance(child, dict):
            _limit_strings(child)
