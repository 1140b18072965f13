"""Dysen's prompt templates, kept as versioned data files, and the chat messages built from them.

Dysen-VDM §3.1 (dysen_spec.md §2.1–§2.3); the wording is this project's own. Every request is a system
turn (``system.txt``) and one user turn: the step's instruction with its answer-format rules, the
demonstrations as solved ``input: … / output: …`` examples, then the query. The three steps each have
a template file (``action_planning.txt``, ``imagination.txt``, ``polish.txt``); ``repair.txt`` is the
follow-up turn after an unusable answer.

Template files are read with ``importlib.resources``. Lines starting with ``#`` before the first
section are comments; ``[name]`` starts a section; ``$name`` placeholders are filled by
``string.Template``. ``PROMPT_VERSION`` (the ``VERSION.txt`` file) and a digest of all template files
make up ``cache_namespace()``: build ``CachedBackend(..., namespace=cache_namespace())`` and any edit
of a template misses the cache instead of replaying answers to the old wording.

Demonstrations carry only their final DSG, so the prompts derive the rest: Step I shows its events;
round 1 shows, for each of its steps, the previous gold graph, the current and next Step II graphs,
and the gold graph as the answer; round 2 shows its Step II graphs as the draft and its gold graphs
as the polished answer. The same demonstrations serve all three steps, as in the paper.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from string import Template

from dysen.dsg import DynamicSceneGraph, SceneGraph, events_to_dsg
from dysen.errors import DysenError
from dysen.planner.backends.base import ChatMessage
from dysen.planner.prompts.formats import FORMATS, AnswerFormat, JsonFormat, TextFormat
from dysen.planner.types import Demonstration

Window = tuple[SceneGraph | None, SceneGraph, SceneGraph | None]
"""What round 1 sees of one step: the previous enriched graph, the current and the next raw graph."""

_TEMPLATES = ("system", "action_planning", "imagination", "polish", "repair", "layout")

__all__ = [
    "FORMATS",
    "PROMPT_VERSION",
    "AnswerFormat",
    "JsonFormat",
    "TextFormat",
    "Window",
    "action_planning_messages",
    "cache_namespace",
    "imagination_messages",
    "layout_messages",
    "load_template",
    "polish_messages",
    "repair_message",
]


def _read(filename: str) -> str:
    return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")


PROMPT_VERSION = _read("VERSION.txt").strip()
"""The version of the prompt templates (``VERSION.txt``); bump it whenever a template's meaning changes."""


@cache
def cache_namespace() -> str:
    """``prompts-v<VERSION>-<digest of the template files>``: the ``CachedBackend`` namespace for Dysen."""
    digest = hashlib.sha256("\0".join(_read(f"{name}.txt") for name in _TEMPLATES).encode("utf-8"))
    return f"prompts-v{PROMPT_VERSION}-{digest.hexdigest()[:12]}"


@cache
def load_template(name: str) -> dict[str, Template]:
    """The sections of template file ``<name>.txt``; ``DysenError`` for an unknown name or a malformed file."""
    if name not in _TEMPLATES:
        raise DysenError(f"no prompt template {name!r}; the templates are {list(_TEMPLATES)}")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(_read(f"{name}.txt").splitlines(), start=1):
        if line.startswith("[") and line.rstrip().endswith("]"):
            current = sections.setdefault(line.strip()[1:-1], [])
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.startswith("#"):
            raise DysenError(f"prompt template {name}.txt line {number}: text before the first [section]")
    return {section: Template("\n".join(lines).strip("\n")) for section, lines in sections.items()}


def _user_turn(step: str, fmt: AnswerFormat, examples: list[str], query: str) -> list[ChatMessage]:
    """System turn, then instruction + format rules + solved examples + query as one user turn."""
    template = load_template(step)
    instruction = template["instruction"].substitute(format=template[f"format.{fmt.name}"].template)
    parts = [instruction]
    if examples:
        parts += [template["examples"].template, *examples]
    parts.append(query)
    system = load_template("system")["system"].template
    return [ChatMessage("system", system), ChatMessage("user", "\n\n".join(parts))]


def action_planning_messages(
    caption: str, demonstrations: Sequence[Demonstration], fmt: AnswerFormat
) -> list[ChatMessage]:
    """Step I: plan the events of ``caption``."""
    template = load_template("action_planning")
    examples = [
        template["example"].substitute(caption=d.caption, answer=fmt.write_events(d.dsg.events))
        for d in demonstrations
    ]
    return _user_turn("action_planning", fmt, examples, template["query"].substitute(caption=caption))


def imagination_messages(
    caption: str,
    window: Window,
    demonstrations: Sequence[Demonstration],
    fmt: AnswerFormat,
) -> list[ChatMessage]:
    """Step III round 1: enrich the current graph of ``window = (previous enriched, current raw, next raw)``."""
    template = load_template("imagination")
    examples = [
        template["example"].substitute(caption=d.caption, **_window_fields(demo_window, fmt), answer=answer)
        for d in demonstrations
        for demo_window, answer in _demo_windows(d, fmt)
    ]
    query = template["query"].substitute(caption=caption, **_window_fields(window, fmt))
    return _user_turn("imagination", fmt, examples, query)


def polish_messages(
    caption: str, graphs: Sequence[SceneGraph], demonstrations: Sequence[Demonstration], fmt: AnswerFormat
) -> list[ChatMessage]:
    """Step III round 2: polish all enriched ``graphs`` of ``caption`` into one consistent sequence."""
    template = load_template("polish")
    examples = [
        template["example"].substitute(
            caption=d.caption, graphs=fmt.write_graphs(_raw_graphs(d)), answer=fmt.write_graphs(d.dsg.graphs)
        )
        for d in demonstrations
    ]
    query = template["query"].substitute(caption=caption, graphs=fmt.write_graphs(graphs))
    return _user_turn("polish", fmt, examples, query)


def layout_messages(caption: str, dsg: DynamicSceneGraph) -> list[ChatMessage]:
    """The layout step (issue 24 §2): each object's box at every keyframe of the planned ``dsg``, as JSON."""
    template = load_template("layout")
    events = [f"{e.agent} {e.predicate}{' ' + e.target if e.target else ''}: steps {e.start} to {e.end}"
              + (f" ({e.motion.to_text()})" if e.motion else "") for e in dsg.events]  # fmt: skip
    steps = [f"step {m}: {', '.join(g.objects) or 'nothing'}" for m, g in enumerate(dsg.graphs)]
    objects = ", ".join(dict.fromkeys(n for g in dsg.graphs for n in g.objects))
    fields = {"keyframes": dsg.num_steps + 1, "last": dsg.num_steps - 1}
    instruction = template["instruction"].substitute(fields)
    query = template["query"].substitute(caption=caption, plan="\n".join(events + steps), objects=objects)
    system = load_template("system")["system"].template
    return [ChatMessage("system", system), ChatMessage("user", f"{instruction}\n\n{query}")]


def repair_message(error: str) -> ChatMessage:
    """The follow-up user turn quoting why the previous answer was rejected."""
    return ChatMessage("user", load_template("repair")["repair"].substitute(error=error))


def _window_fields(window: Window, fmt: AnswerFormat) -> dict[str, str]:
    previous, current, following = window
    return {
        "previous": "none" if previous is None else fmt.write_graph(previous),
        "current": fmt.write_graph(current),
        "next": "none" if following is None else fmt.write_graph(following),
    }


def _raw_graphs(demo: Demonstration) -> tuple[SceneGraph, ...]:
    """The Step II graphs of a demonstration's events, padded with empty graphs to its number of steps."""
    raw = events_to_dsg(demo.dsg.events).graphs
    return raw + (SceneGraph(),) * (demo.dsg.num_steps - len(raw))


def _demo_windows(demo: Demonstration, fmt: AnswerFormat) -> Iterator[tuple[Window, str]]:
    """For each step of ``demo``: (previous gold, current raw, next raw) and the gold graph as the answer."""
    raw, gold = _raw_graphs(demo), demo.dsg.graphs
    for step, current in enumerate(raw):
        previous = gold[step - 1] if step > 0 else None
        following = raw[step + 1] if step + 1 < len(raw) else None
        yield (previous, current, following), fmt.write_graph(gold[step])
