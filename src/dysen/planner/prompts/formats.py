"""The two answer formats of Dysen's prompts: the paper's tuple text, and JSON held to a JSON Schema.

Dysen-VDM §3.1 (dysen_spec.md §2.1, §2.3, §3). Each format writes what the LLM is shown (events, one
scene graph, a list of graphs) and reads what it answers, for the three kinds of answer:

* Step I: the events, ``(agent, predicate, target, (0v, 2v))`` lines or ``{"events": [...]}``;
* Step III round 1: one scene graph, ``(s, p, o), (o, a)`` tuples or ``{"objects", "attributes", "relations"}``;
* Step III round 2: one graph per step, ``<m> SG: …`` lines or ``{"graphs": [...]}``.

The JSON Schemas are derived from the pydantic types of ``dysen.dsg``, made self-contained (no ``$ref``)
and strict (every field required, no extra fields; tuples are arrays of named-field objects, never
``prefixItems``) so that structured-output servers accept them. The readers are tolerant where the text
is unambiguous (prose and code fences around the answer, a graph naming objects only in its facts)
and raise ``DSGError`` otherwise; an answer is read only if it can also be written back, because the
next prompt shows it to the LLM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from dysen.dsg import Attribute, Event, Relation, SceneGraph
from dysen.dsg.textfmt import format_events, format_graph, parse_dsg, parse_events, parse_graph
from dysen.errors import DSGError

Schema = Mapping[str, Any]


class AnswerFormat(Protocol):
    """How graphs and events are written into prompts, and how answers are read back."""

    name: str
    events_schema: Schema | None
    graph_schema: Schema | None
    graphs_schema: Schema | None

    def write_events(self, events: Iterable[Event]) -> str: ...

    def write_graph(self, graph: SceneGraph) -> str: ...

    def write_graphs(self, graphs: Sequence[SceneGraph]) -> str: ...

    def read_events(self, text: str) -> tuple[Event, ...]: ...

    def read_graph(self, text: str) -> SceneGraph: ...

    def read_graphs(self, text: str) -> tuple[SceneGraph, ...]: ...


class TextFormat:
    """The paper's tuple text (``dysen.dsg.textfmt``); no schema is sent."""

    name = "text"
    events_schema = graph_schema = graphs_schema = None

    def write_events(self, events: Iterable[Event]) -> str:
        return format_events(events)

    def write_graph(self, graph: SceneGraph) -> str:
        return format_graph(graph)

    def write_graphs(self, graphs: Sequence[SceneGraph]) -> str:
        return "\n".join(f"{step} SG: {format_graph(graph)}" for step, graph in enumerate(graphs))

    def read_events(self, text: str) -> tuple[Event, ...]:
        events = parse_events(text)
        format_events(events)
        return events

    def read_graph(self, text: str) -> SceneGraph:
        graph = parse_graph(text)
        format_graph(graph)
        return graph

    def read_graphs(self, text: str) -> tuple[SceneGraph, ...]:
        graphs = parse_dsg(text).graphs
        self.write_graphs(graphs)
        return graphs


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _EventsAnswer(_Answer):
    events: list[Event]


class _GraphAnswer(_Answer):
    """A graph as answered: ``objects`` may omit names its facts use (``SceneGraph.from_facts`` adds them)."""

    objects: list[str] = []
    attributes: list[Attribute] = []
    relations: list[Relation] = []

    def graph(self) -> SceneGraph:
        return SceneGraph.from_facts(
            relations=[r.as_tuple() for r in self.relations],
            attributes=[a.as_tuple() for a in self.attributes],
            objects=self.objects,
        )


class _GraphsAnswer(_Answer):
    graphs: list[_GraphAnswer]


class JsonFormat:
    """JSON objects with named fields, sent with a JSON Schema for servers that support structured output."""

    name = "json"

    def __init__(self) -> None:
        graph = _strict(SceneGraph.model_json_schema())
        event = _strict(Event.model_json_schema())
        del event["properties"]["motion"]  # the LLM writes predicates; the motion normaliser sets the motion
        event["required"].remove("motion")
        self.events_schema = _root("ActionPlan", {"events": {"type": "array", "items": event}})
        self.graph_schema = {**graph, "title": "SceneGraph"}
        self.graphs_schema = _root("SceneGraphs", {"graphs": {"type": "array", "items": graph}})

    def write_events(self, events: Iterable[Event]) -> str:
        return _dumps({"events": [e.model_dump(mode="json", exclude={"motion"}) for e in events]})

    def write_graph(self, graph: SceneGraph) -> str:
        return _dumps(graph.model_dump(mode="json"))

    def write_graphs(self, graphs: Sequence[SceneGraph]) -> str:
        return _dumps({"graphs": [g.model_dump(mode="json") for g in graphs]})

    def read_events(self, text: str) -> tuple[Event, ...]:
        events = tuple(_validated(_EventsAnswer, text).events)
        if not events:
            raise DSGError('the answer lists no events; give at least one in "events"')
        return events

    def read_graph(self, text: str) -> SceneGraph:
        return _as_graph(_validated(_GraphAnswer, text))

    def read_graphs(self, text: str) -> tuple[SceneGraph, ...]:
        return tuple(_as_graph(g) for g in _validated(_GraphsAnswer, text).graphs)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _validated(model: type[_Answer], text: str) -> Any:
    """The first JSON object in ``text`` (prose and code fences around it are skipped), checked by ``model``."""
    start = text.find("{")
    if start < 0:
        raise DSGError("the answer holds no JSON object; answer with one JSON object and nothing else")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as err:
        raise DSGError(f"the answer is not valid JSON: {err}") from None
    except RecursionError:
        raise DSGError("the answer's JSON is nested too deeply") from None
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise DSGError(f"the answer's JSON does not fit the schema: {_describe(err)}") from None


def _as_graph(answer: _GraphAnswer) -> SceneGraph:
    try:
        return answer.graph()
    except ValidationError as err:
        raise DSGError(f"invalid scene graph: {_describe(err)}") from None


def _describe(err: ValidationError) -> str:
    """The first three pydantic errors as ``where: what``."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()[:3]]
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _root(title: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, "type": "object", "properties": properties, **_closed(properties)}


def _closed(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"required": list(properties), "additionalProperties": False}


def _strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$ref``s inlined, and every object closed with all its fields required."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        if "$ref" in node:
            return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
        out = {key: resolve(value) for key, value in node.items() if key not in ("$defs", "default", "properties")}
        if "properties" in node:
            out["properties"] = {name: resolve(value) for name, value in node["properties"].items()}
            out.update(_closed(out["properties"]))
        return out

    return resolve(schema)


FORMATS: dict[str, AnswerFormat] = {"text": TextFormat(), "json": JsonFormat()}
"""The answer formats by name: the ``output`` setting of ``DysenPlanner``."""
