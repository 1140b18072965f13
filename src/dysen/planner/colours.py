"""Colours the world lacks -> the nearest world colour, with a warning (issue 23).

Every plan passes ``dysen.planner.motion.with_motion`` (rules and LLM planners, a replay, ``generate --plan``,
the demo's edited plan), and ``with_motion`` first calls ``with_world_colours``: each colour word that the
Dynamic Shapes world does not paint (``dysen.world.colours.COLOUR_NAMES``, e.g. white, pink, navy) is replaced
by its nearest world colour (CIE76 Delta E, ``dysen.world.colours``) wherever the DSG names an object's colour.
The world's colours are the model's palette (``PlannerOptions.colours``): the default world's six, or the wider
palette a model was trained on (``--world-colours``; with pink and cyan, "pink" stays pink, "hotpink" maps to it).
A palette of None (a pretrained backbone, which draws any colour) keeps every colour as written:

- an attribute ``(star, white)`` of any step -> ``(star, yellow)``;
- the target of a colour change (a verb such as turn, become, paint) ``(square, turns, pink)`` -> ``red``,
  and the colour node ``pink`` the scene graphs list as an object -> ``red`` (a one-word name is renamed only
  when it is such a target: "flies into the sky" keeps its sky);
- a colour word in front of a noun in an object's name ("cyan circle" -> "green circle"), in events, relations,
  attributes and boxes alike; a predicate ending in a colour ("becomes white") likewise. An event whose
  target or predicate changed loses its motion, so ``with_motion`` reads it again ("turns navy" had no
  colour the lexicon knows, so it read as a turn; as "turns blue" it is a colour change).

The DSG then says what will be drawn: the layout imagination, the RGTrm (which reads the labels through its
text encoder) and the scorer all see a world colour, and the plan a user edits shows it. The word as written is
not kept in the DSG; it is in the warning, logged once per replacement (``dysen plan`` / ``dysen generate``
print it to stderr) and listed by ``colour_warnings(dsg)`` for a DSG not yet mapped (the demo's status line,
which also collects the warnings logged while planning: ``collected_warnings``). A plan that names world
colours only is returned unchanged (the same object), so it plans, imagines and generates exactly as before.
Words that name no colour ("shiny", "happy") are left alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from dysen.dsg.types import DynamicSceneGraph, Event
from dysen.planner.lexicon import COLOUR_VERBS, DIRECTION_OF, lemma
from dysen.world.colours import DEFAULT_PALETTE, colour_map

__all__ = ["collected_warnings", "colour_replacements", "colour_warnings", "with_world_colours"]

log = logging.getLogger(__name__)


_PLACE_PREPOSITIONS = frozenset("into onto toward towards across through over".split())


def _changes_colour(event: Event) -> bool:
    """Whether the event's target is a colour it takes: its motion says so, or a colour verb with no direction or
    place ("turns navy", not "goes up to the sky", "turns toward the rose", "flies into the sky")."""
    if event.motion is not None and event.motion.kind == "change_colour":
        return True
    words = event.predicate.lower().split()
    if any(w in DIRECTION_OF or w in _PLACE_PREPOSITIONS for w in words):
        return False
    return any((lemma(w) or (w,))[0] in COLOUR_VERBS for w in words)


def _targets(dsg: DynamicSceneGraph, nearest: dict[str, tuple[str, float]]) -> set[str]:
    return {e.target for e in dsg.events if e.target in nearest and _changes_colour(e)}


def _renamer(
    dsg: DynamicSceneGraph, nearest: dict[str, tuple[str, float]]
) -> tuple[dict[tuple[str, str], tuple[str, float]], object]:
    """The replacements ``{(what, word): (world colour, Delta E)}`` a DSG needs, and a function mapping a name;
    ``nearest``: the palette's ``colour_map``."""
    targets = _targets(dsg, nearest)
    found: dict[tuple[str, str], tuple[str, float]] = {}

    def name(text: str, whole: bool = False) -> str:
        words = text.split()
        if len(words) == 1:
            if words[0] in nearest and (whole or words[0] in targets):
                found.setdefault(("", words[0]), nearest[words[0]])
                return nearest[words[0]][0]
            return text
        out = []
        for i, word in enumerate(words):
            if word in nearest and i < len(words) - 1:  # a colour in front of a noun
                found.setdefault((" ".join(words[i + 1 :]), word), nearest[word])
                word = nearest[word][0]
            out.append(word)
        return " ".join(out)

    return found, name


def _mapped(
    dsg: DynamicSceneGraph, palette: tuple[str, ...]
) -> tuple[DynamicSceneGraph, dict[tuple[str, str], tuple[str, float]]]:
    nearest = colour_map(tuple(palette))
    found, name = _renamer(dsg, nearest)

    def predicate(text: str) -> str:
        words = text.split()
        if len(words) > 1 and words[-1] in nearest:  # "becomes white"
            found.setdefault(("", words[-1]), nearest[words[-1]])
            return " ".join([*words[:-1], nearest[words[-1]][0]])
        return text

    events = []
    for e in dsg.events:
        target = e.target
        if target in nearest and _changes_colour(e):
            found.setdefault((name(e.agent), target), nearest[target])
            target = nearest[target][0]
        elif target is not None:
            target = name(target)
        update = {"agent": name(e.agent), "target": target, "predicate": predicate(e.predicate)}
        if (update["target"], update["predicate"]) != (e.target, e.predicate):
            update["motion"] = None  # read again with the world colour ("turns navy" is a change to blue)
        events.append(e.model_copy(update=update))
    graphs = []
    for g in dsg.graphs:
        attributes = []
        for a in g.attributes:
            value = a.attribute
            if value in nearest:
                found.setdefault((name(a.object), value), nearest[value])
                value = nearest[value][0]
            attributes.append(a.model_copy(update={"object": name(a.object), "attribute": value}))
        relations = [r.model_copy(update={"subject": name(r.subject), "object": name(r.object)}) for r in g.relations]
        objects = tuple(dict.fromkeys(name(o) for o in g.objects))
        graphs.append(g.model_copy(update={"objects": objects, "attributes": tuple(attributes),
                                           "relations": tuple(relations)}))  # fmt: skip
    boxes = dsg.boxes
    if boxes is not None:
        boxes = tuple(tuple(b.model_copy(update={"object": name(b.object)}) for b in step) for step in boxes)
    if not found:
        return dsg, found
    return dsg.model_copy(update={"events": tuple(events), "graphs": tuple(graphs), "boxes": boxes}), found


def colour_replacements(
    dsg: DynamicSceneGraph, palette: tuple[str, ...] | None = DEFAULT_PALETTE
) -> list[tuple[str, str, str, float]]:
    """``(object or '', colour word, world colour, Delta E)`` for each colour ``palette`` lacks, in DSG order (none
    for ``palette`` None: any colour)."""
    return [] if palette is None else _replacements(_mapped(dsg, palette)[1])


def _replacements(found: dict[tuple[str, str], tuple[str, float]]) -> list[tuple[str, str, str, float]]:
    return [(what, word, world, distance) for (what, word), (world, distance) in found.items()]


def _line(what: str, word: str, world: str, distance: float, palette: tuple[str, ...]) -> str:
    subject = f"the {what}" if what else f"'{word}'"
    return (f"the Dynamic Shapes world has no colour '{word}' (its colours: {', '.join(palette)}); "
            f"{subject} is drawn {world}, the nearest (CIELAB Delta E {distance:.0f})")  # fmt: skip


def colour_warnings(dsg: DynamicSceneGraph, palette: tuple[str, ...] | None = DEFAULT_PALETTE) -> list[str]:
    """One line per colour word of a (not yet mapped) DSG that ``palette`` lacks, naming its replacement."""
    return [] if palette is None else _warning_lines(colour_replacements(dsg, palette), palette)


def _warning_lines(found: list[tuple[str, str, str, float]], palette: tuple[str, ...]) -> list[str]:
    named = {word for what, word, _, _ in found if what}
    lines = (_line(*r, palette) for r in found if r[0] or r[1] not in named)  # a 'turns' colour node: with its object
    return list(dict.fromkeys(lines))


def with_world_colours(
    dsg: DynamicSceneGraph, palette: tuple[str, ...] | None = DEFAULT_PALETTE
) -> DynamicSceneGraph:
    """``dsg`` with every colour ``palette`` (the model's world colours) lacks replaced by the nearest of them;
    a warning for each. ``palette`` None: the model draws any colour, so ``dsg`` is returned as it is."""
    if palette is None:
        return dsg
    mapped, found = _mapped(dsg, palette)
    for line in _warning_lines(_replacements(found), palette):
        log.warning(line)
    return mapped


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The colour warnings logged while the block runs (e.g. while a planner plans), in order."""
    lines: list[str] = []
    handler = _Collect(lines)
    log.addHandler(handler)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
