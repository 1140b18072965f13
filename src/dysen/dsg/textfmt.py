"""The paper's tuple text format for events, scene graphs and whole DSGs, with a tolerant reader.

Dysen-VDM §3.2 (dysen_spec.md §2.1, §2.3, §3). This is the text the LLM reads and writes.

* Event (Step I): ``(agent, predicate, target, (0v, 2v))``, or ``(agent, predicate, (0v, 2v))``
  when the action has no target; an event with a canonical motion (``Motion``) ends with it in square
  brackets, ``(circle, slides to the left, (0v, 2v), [move left])`` (``[grow 0.5]`` with an amount).
  Texts without it still read, as events without a motion.
* Scene graph: ``(subject, predicate, object)`` relations and ``(object, attribute)`` attributes,
  comma-separated. An object that is in no fact is written alone, ``(object)``; such 1-tuples are also
  written ahead of facts when that is needed to keep the graph's object order. An empty graph is ``none``.
* Whole DSG, written by ``format_dsg``::

      events:
      (lady, sitting on, chair, (0v, 5v))
      (lady, drinking, coffee, (1v, 2v))
      scene graphs:
      0 SG: (lady, sitting on, chair)
      1 SG: (lady, sitting on, chair), (lady, drinking, coffee)

  ``events: none`` when there are none; one ``<m> SG:`` line per step, counted from 0. Per-step boxes
  are not part of the text format (they live in JSON) and are not written. ``parse_dsg(format_dsg(d))
  == d`` for every DSG without boxes whose labels can be written (no brackets, commas, a step label
  like ``SG 1:``, or quotes at either end; ``format_*`` raise ``DSGError`` otherwise).

Reading is line by line and tolerant of what LLMs write: numbering and bullets, prose and ``Output:``
labels, code fences, quotes or backticks around fields, several tuples on a line, and the time forms
``(0v, 2v)``, ``(0 v,2 v)``, ``(0, 2)``, ``[0v, 2v]``, ``0v-2v``, ``(0v to 2v)``. Steps may be
labelled ``0 SG:``, ``SG 0:``, ``1st SG:``, ``Step 1:``, ``Scene graph 1:`` or ``t=0:``, counted from
0 or 1, several on one line or one graph over several lines. Prose is skipped; a line that is not
prose but cannot be read is an error naming it: one that starts (after numbering and labels) with a
bracket no tuple pattern reads, or one where text left between the tuples read holds another
bracketed, comma-separated group. Every failure is a ``DSGError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import ValidationError

from dysen.dsg.convert import events_to_dsg
from dysen.dsg.types import (
    LIMITS,
    MAX_STEPS,
    Attribute,
    DynamicSceneGraph,
    Event,
    Motion,
    Relation,
    SceneGraph,
    describe_error,
)
from dysen.errors import DSGError

_Lines = list[tuple[int, str]]
"""Text as (1-based line number, line) pairs, so every error can name its line."""

_QUOTES = "\"'`“”‘’"
"""Quote characters stripped from both ends of a field."""

# One tuple field: text without brackets, commas or newlines that neither starts nor ends with whitespace.
_FIELD = r"[^()\[\],\s](?:[^()\[\],\n]*[^()\[\],\s])?"

# An event tuple: (agent, predicate[, target], time), the time as (0v, 2v), [0v,2v], (0, 2), 0v-2v or (0v to 2v),
# optionally quoted.
_EVENT = re.compile(
    rf"\(\s*(?P<agent>{_FIELD})\s*,\s*(?P<predicate>{_FIELD})\s*(?:,\s*(?P<target>{_FIELD})\s*)?,"
    r"\s*[\"'`]?[(\[]?\s*(?P<start>\d{1,9})\s*v?\s*(?:,|-|–|~|to)\s*(?P<end>\d{1,9})\s*v?\s*[)\]]?[\"'`]?\s*"
    r"(?:,\s*\[\s*(?P<motion>[a-z_]{1,20}(?:\s+[a-z]{1,10})?(?:\s+[0-9.e+-]{1,30})?)\s*\]\s*)?\)",
    re.IGNORECASE,
)

# A scene-graph tuple: (object), (object, attribute) or (subject, predicate, object).
_GRAPH_TUPLE = re.compile(rf"\(\s*({_FIELD})\s*(?:,\s*({_FIELD})\s*)?(?:,\s*({_FIELD})\s*)?\)")

# Numbering ("1.", "2)"), bullets ("-", "*", "•", ">") and labels ("Output:") in front of a line's content.
_LEAD = re.compile(r"^\s*(?:(?:\d+[.)]|[-*•>]|[a-z][a-z ]{0,20}:)\s*)*", re.IGNORECASE)

# An opening bracket followed by a comma before any bracket closes: a tuple nobody read.
_UNREAD = re.compile(r"[(\[][^()\[\]\n]*,")

# A line saying a graph has no facts: none / empty / nothing / n/a (optionally bracketed), (), [], {}, or "-".
_EMPTY_LINE = re.compile(
    r"^\s*(?:[a-z][a-z ]{0,20}:\s*)?"
    r"(?:[(\[{]?\s*(?:none|empty|nothing|n/a)\s*[)\]}]?|\(\s*\)|\[\s*\]|\{\s*\}|-)\s*\.?\s*$",
    re.IGNORECASE,
)

# A step label opening one scene graph: "0 SG:", "1st SG:", "SG 0:", "Scene graph 1:", "Step 1:", "t=0:",
# at the start of a line or after whitespace or punctuation.
_STEP = re.compile(
    r"(?:^|(?<=[\s.;,*]))"
    r"(?:(?P<a>\d{1,6})\s*(?:st|nd|rd|th)?\s*(?:SG|scene[ _-]?graph)|(?:SG|scene[ _-]?graph)\s*(?P<b>\d{1,6})"
    r"|step\s*(?P<c>\d{1,6})|t\s*=\s*(?P<d>\d{1,6}))\s*:",
    re.IGNORECASE,
)

# Characters the tuple syntax reserves: labels holding one cannot be written as text.
_RESERVED = re.compile(r"[()\[\],\n]")

MAX_TEXT_LINES = 16384
"""Lines a DSG text may have (a DSG at the ``DSGLimits`` needs at most about 520, one graph per line)."""
MAX_TEXT_CHARS = 8_000_000
"""Characters a DSG text may have (a DSG at every ``DSGLimits`` bound, all labels 100 characters: about 7 MB)."""
MAX_LINE_CHARS = 1_000_000
"""Characters one line may have (a graph at ``DSGLimits.max_facts_per_graph`` of 100-character labels: 350 KB)."""

_EVENT_HINT = "expected an event tuple like (agent, predicate, target, (0v, 2v))"
_GRAPH_HINT = "expected scene-graph tuples like (subject, predicate, object) or (object, attribute)"


# -- writing -------------------------------------------------------------------------------------


def format_events(events: Iterable[Event]) -> str:
    """One line per event: ``(agent, predicate, target, (0v, 2v))``, or without the target."""
    return "\n".join(_format_event(e) for e in events)


def _format_event(event: Event) -> str:
    fields = [event.agent, event.predicate] + ([event.target] if event.target is not None else [])
    motion = f", [{event.motion.to_text()}]" if event.motion is not None else ""
    return f"({', '.join(_writable(f) for f in fields)}, ({event.start}v, {event.end}v){motion})"


def format_graph(sg: SceneGraph) -> str:
    """``(s, p, o), (o, a), …``; ``(object)`` for objects in no fact or to keep object order; ``none`` if empty."""
    pieces: list[str] = []
    seen: list[str] = []
    relations, attributes = list(sg.relations), list(sg.attributes)
    while relations or attributes:
        fact = _next_fact(relations, attributes, sg.objects, seen)
        while not _introduces_in_order(fact, sg.objects, seen):  # objects due earlier go first, as 1-tuples
            seen.append(sg.objects[len(seen)])
            pieces.append(_format_tuple((seen[-1],)))
        seen.extend(_new_names(fact, seen))
        pieces.append(_format_tuple(fact.as_tuple()))
    pieces += [_format_tuple((name,)) for name in sg.objects[len(seen) :]]
    text = ", ".join(pieces) or "none"
    if sg.objects and _EMPTY_LINE.match(text):
        raise DSGError(f"the graph {text} would read back as an empty graph; rename the object or use JSON")
    return text


def _new_names(fact: Relation | Attribute, seen: list[str]) -> list[str]:
    names = (fact.subject, fact.object) if isinstance(fact, Relation) else (fact.object,)
    return [n for n in dict.fromkeys(names) if n not in seen]


def _introduces_in_order(fact: Relation | Attribute, objects: tuple[str, ...], seen: list[str]) -> bool:
    """Whether writing ``fact`` next names its new objects in the order ``objects`` lists them."""
    new = _new_names(fact, seen)
    return list(objects[len(seen) : len(seen) + len(new)]) == new


def _next_fact(
    relations: list[Relation], attributes: list[Attribute], objects: tuple[str, ...], seen: list[str]
) -> Relation | Attribute:
    """Pop the next relation or attribute, preferring one that keeps the object order without a 1-tuple."""
    for queue in (relations, attributes):
        if queue and _introduces_in_order(queue[0], objects, seen):
            return queue.pop(0)
    return (relations or attributes).pop(0)


def _format_tuple(fields: tuple[str, ...]) -> str:
    return f"({', '.join(_writable(f) for f in fields)})"


def _writable(label: str) -> str:
    """``label`` itself when the tuple syntax can carry it unchanged; ``DSGError`` otherwise."""
    if _RESERVED.search(label) or label[0] in _QUOTES or label[-1] in _QUOTES or _STEP.search(f" {label}"):
        raise DSGError(
            f"label {label!r} cannot be written in the tuple text format (it holds a bracket, a comma, "
            "a step label or an edge quote); rename it or use JSON"
        )
    return label


def format_dsg(dsg: DynamicSceneGraph) -> str:
    """The block format of the module docstring: an ``events:`` block, then one ``<m> SG:`` line per step."""
    events = format_events(dsg.events) if dsg.events else "none"
    steps = [f"{step} SG: {format_graph(graph)}" for step, graph in enumerate(dsg.graphs)]
    return "\n".join(["events:", events, "scene graphs:", *steps])


# -- reading -------------------------------------------------------------------------------------


def parse_events(text: str) -> tuple[Event, ...]:
    """Every event tuple in ``text``, in order; ``DSGError`` naming the line for anything unreadable."""
    events = _read_events(_numbered(text))
    _check_events(len(events))
    if not events:
        raise DSGError(f"no event tuple found in the text; {_EVENT_HINT}")
    return events


def parse_graph(text: str) -> SceneGraph:
    """A scene graph from its tuples (3 fields: relation, 2: attribute, 1: object); ``none`` is empty."""
    graph = _read_graph(_numbered(text))
    if graph is None:
        raise DSGError(f"no scene-graph tuple found in the text; {_GRAPH_HINT}, or 'none'")
    return graph


def parse_dsg(text: str) -> DynamicSceneGraph:
    """A DSG from the block format (or an LLM's variant of it); events alone go through Step II."""
    head, steps = _split_steps(_numbered(text))
    events = _read_events(head)
    _check_events(len(events))
    if not steps:
        if not events:
            raise DSGError("no scene-graph steps (like '0 SG: (…)') and no event tuples found in the text")
        return events_to_dsg(events)
    if len(steps) > MAX_STEPS:
        raise DSGError(f"the text has {len(steps)} steps; a DSG may have at most {MAX_STEPS}")
    _check_step_numbers(steps)
    graphs = []
    for index, number, lines in steps:
        graph = _read_graph(lines)
        if graph is None:
            raise DSGError(f"line {number}: step {index} has no scene-graph tuple; {_GRAPH_HINT}, or 'none'")
        graphs.append(graph)
    return DynamicSceneGraph.from_dict({"events": events, "graphs": graphs})


def _numbered(text: str) -> _Lines:
    """The lines of ``text``; ``DSGError`` at once for text far larger than any DSG's (before any regex runs)."""
    if not isinstance(text, str):
        raise DSGError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise DSGError(f"the text has {len(text)} characters; a DSG's text has at most {MAX_TEXT_CHARS}")
    lines = text.splitlines()
    if len(lines) > MAX_TEXT_LINES:
        raise DSGError(f"the text has {len(lines)} lines; a DSG's text has at most {MAX_TEXT_LINES}")
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise DSGError(f"line {number} has {len(line)} characters; the limit is {MAX_LINE_CHARS}: shorten it")
    return list(enumerate(lines, start=1))


def _check_events(count: int) -> None:
    if count > LIMITS.max_events:
        raise DSGError(
            f"the text has {count} events; the limit is {LIMITS.max_events} (DSGLimits.max_events): plan fewer"
        )


def _where(number: int, line: str) -> str:
    shown = line.strip()
    return f"line {number} {shown if len(shown) <= 100 else shown[:97] + '...'!r}"


def _scan(number: int, line: str, pattern: re.Pattern[str], hint: str) -> list[re.Match[str]]:
    """The tuples ``pattern`` reads in one line; raises if the line holds a tuple it cannot read."""
    matches = list(pattern.finditer(line))
    if matches:
        unread = _UNREAD.search(pattern.sub("\n", line)) is not None
    else:
        unread = _LEAD.sub("", line)[:1] in ("(", "[")
    if unread:
        raise DSGError(f"{_where(number, line)}: cannot read this; {hint}")
    return matches


def _field(raw: str) -> str:
    return " ".join(raw.strip().strip(_QUOTES).split())


def _read_events(lines: _Lines) -> tuple[Event, ...]:
    events = []
    for number, line in lines:
        for match in _scan(number, line, _EVENT, _EVENT_HINT):
            agent, predicate = _field(match["agent"]), _field(match["predicate"])
            start, end = int(match["start"]), int(match["end"])
            if not agent or not predicate:
                raise DSGError(f"{_where(number, line)}: an event needs a non-empty agent and predicate")
            if end <= start:
                raise DSGError(f"{_where(number, line)}: the event ends at {end}v, not after its start {start}v")
            target = _field(match["target"]) if match["target"] else None
            try:
                motion = Motion.from_text(match["motion"]) if match["motion"] else None
                events.append(Event(agent=agent, predicate=predicate, target=target, start=start, end=end,
                                    motion=motion))  # fmt: skip
            except ValidationError as err:
                raise DSGError(f"{_where(number, line)}: {err.errors()[0]['msg']}") from None
            except ValueError as err:  # a motion in brackets that is not 'kind [direction] [amount]'
                raise DSGError(f"{_where(number, line)}: {err}") from None
    return tuple(events)


def _read_graph(lines: _Lines) -> SceneGraph | None:
    """The graph of ``lines``; ``None`` when they hold neither a tuple nor an explicit 'none'."""
    tuples: list[tuple[str, ...]] = []
    said_empty = False
    for number, line in lines:
        if _EMPTY_LINE.match(line):
            said_empty = True
            continue
        for match in _scan(number, line, _GRAPH_TUPLE, _GRAPH_HINT):
            fields = tuple(_field(f) for f in match.groups() if f is not None)
            if not all(fields):
                raise DSGError(f"{_where(number, line)}: empty field in {match.group(0)!r}")
            tuples.append(fields)
    if not tuples:
        blank = all(not line.strip() for _, line in lines)
        return SceneGraph() if said_empty or blank else None
    names = [name for t in tuples for name in ((t[0], t[2]) if len(t) == 3 else (t[0],))]
    try:
        return SceneGraph(
            objects=tuple(dict.fromkeys(names)),
            attributes=tuple(Attribute(object=o, attribute=a) for o, a in (t for t in tuples if len(t) == 2)),
            relations=tuple(
                Relation(subject=s, predicate=p, object=o) for s, p, o in (t for t in tuples if len(t) == 3)
            ),
        )
    except ValidationError as err:  # a label or a count over DSGLimits
        raise DSGError(f"line {lines[0][0]}: invalid scene graph: {describe_error(err)}") from None


def _split_steps(lines: _Lines) -> tuple[_Lines, list[tuple[int, int, _Lines]]]:
    """Cut the text at step labels: the lines before the first, and (index, line number, lines) per step."""
    head: _Lines = []
    steps: list[tuple[int, int, _Lines]] = []
    for number, line in lines:
        current, pos = (steps[-1][2] if steps else head), 0
        for label in _STEP.finditer(line):
            current.append((number, line[pos : label.start()]))
            index = next(int(g) for g in label.group("a", "b", "c", "d") if g is not None)
            steps.append((index, number, []))
            current, pos = steps[-1][2], label.end()
        current.append((number, line[pos:]))
    return head, steps


def _check_step_numbers(steps: list[tuple[int, int, _Lines]]) -> None:
    """Steps must be numbered 0, 1, 2, … or 1, 2, 3, … in order."""
    base = steps[0][0]
    if base not in (0, 1):
        raise DSGError(f"line {steps[0][1]}: steps must be counted from 0 or 1, the first is step {base}")
    for expected, (index, number, _) in enumerate(steps, start=base):
        if index != expected:
            raise DSGError(f"line {number}: expected step {expected} next, found step {index}")
