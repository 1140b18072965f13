"""The DSG data model: validation errors are DSGError, JSON round-trips, the schema describes real DSGs."""

from __future__ import annotations

import json

import pytest

from dysen.dsg import Box, DynamicSceneGraph, Event, SceneGraph, dsg_json_schema
from dysen.errors import DSGError, DysenError


def _dsg(**extra) -> dict:
    data = {
        "events": [{"agent": "red circle", "predicate": "moves right", "start": 0, "end": 2}],
        "graphs": [
            {"objects": ["red circle"], "attributes": [{"object": "red circle", "attribute": "moves right"}]},
            {
                "objects": ["red circle", "square"],
                "relations": [{"subject": "red circle", "predicate": "left of", "object": "square"}],
            },
        ],
    }
    return data | extra


def test_a_valid_dict_builds_a_dsg():
    dsg = DynamicSceneGraph.from_dict(_dsg())
    assert dsg.num_steps == 2
    assert dsg.events[0].target is None and dsg.events[0].triplet == ("red circle", "moves right", None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"graphs": []}, "graphs"),
        ({"schema_version": 99}, "schema_version 99"),
        ({"events": [{"agent": "a", "predicate": "b", "start": 2, "end": 2}]}, "end > start"),
        ({"events": [{"agent": " ", "predicate": "b", "start": 0, "end": 1}]}, "non-empty"),
        ({"graphs": [{"objects": ["a"], "relations": [{"subject": "a", "predicate": "p", "object": "b"}]}]}, "['b']"),
        ({"graphs": [{"objects": ["a", "a"]}]}, "unique"),
        ({"boxes": [[]]}, "boxes cover 1 keyframes but there are 2 graphs"),
        ({"boxes": [[], [], [], []]}, "boxes cover 4 keyframes but there are 2 graphs"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_dicts_raise_dsg_error_naming_the_problem(change, message):
    with pytest.raises(DSGError) as info:
        DynamicSceneGraph.from_dict(_dsg(**change))
    assert message in str(info.value)
    assert isinstance(info.value, DysenError)


def test_invalid_json_text_raises_dsg_error():
    with pytest.raises(DSGError, match="not valid JSON"):
        DynamicSceneGraph.from_json("{not json")
    with pytest.raises(DSGError, match="invalid dynamic scene graph"):
        DynamicSceneGraph.from_json("[1, 2]")


def test_json_round_trip_is_exact():
    dsg = DynamicSceneGraph.from_dict(
        _dsg(boxes=[[Box(object="red circle", x0=0, y0=0, x1=0.5, y1=0.5).model_dump()], []])
    )
    again = DynamicSceneGraph.from_json(dsg.to_json(indent=2))
    assert again == dsg
    assert "boxes" not in DynamicSceneGraph.from_dict(_dsg()).to_dict()


def test_boxes_must_name_objects_of_their_step():
    with pytest.raises(DSGError, match=r"step 0 has boxes for objects not in its scene graph: \['square'\]"):
        DynamicSceneGraph.from_dict(_dsg(boxes=[[{"object": "square", "x0": 0, "y0": 0, "x1": 1, "y1": 1}], []]))
    with pytest.raises(DSGError, match="x0 <= x1"):
        DynamicSceneGraph.from_dict(
            _dsg(boxes=[[{"object": "red circle", "x0": 0.9, "y0": 0, "x1": 0.1, "y1": 1}], []])
        )


def test_repeated_facts_are_kept_once():
    graph = SceneGraph(objects=("a", "b"), relations=SceneGraph.from_facts([("a", "p", "b")]).relations * 2)
    assert len(graph.relations) == 1


def test_events_normalise_whitespace_and_blank_targets():
    event = Event(agent="  red   circle ", predicate="moves", target="  ", start=0, end=1)
    assert (event.agent, event.target) == ("red circle", None)


def test_json_schema_validates_a_real_dsg():
    jsonschema = pytest.importorskip("jsonschema", reason="the jsonschema package is not installed")
    schema = dsg_json_schema()
    jsonschema.validate(DynamicSceneGraph.from_dict(_dsg()).to_dict(), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"graphs": "nope"}, schema)


def test_json_schema_is_plain_json():
    schema = json.loads(json.dumps(dsg_json_schema()))
    assert schema["title"] == "DynamicSceneGraph" and "graphs" in schema["required"]


def test_spans_past_the_step_limit_or_past_the_graphs_are_errors():
    from dysen.dsg import parse_events
    from dysen.dsg.types import MAX_STEPS

    with pytest.raises(DSGError, match="line 1"):
        parse_events(f"(man, walks, (0v, {MAX_STEPS + 1}v))")
    event = {"agent": "man", "predicate": "walks", "start": 0, "end": 3}
    with pytest.raises(DSGError, match="only 1 time steps"):
        DynamicSceneGraph.from_dict({"events": [event], "graphs": [{}]})


def test_dsg_limits_are_refused_with_the_bound_named_and_exported_in_the_schema():
    from dysen.dsg.types import LIMITS

    with pytest.raises(DSGError, match=r"has 257; the limit is 256 \(DSGLimits.max_steps\)"):
        DynamicSceneGraph.from_dict({"graphs": [{}] * 257})
    with pytest.raises(DSGError, match="DSGLimits.max_facts_per_graph"):
        attributes = [{"object": "a", "attribute": str(i)} for i in range(1025)]
        DynamicSceneGraph.from_dict({"graphs": [{"objects": ["a"], "attributes": attributes}]})
    schema = dsg_json_schema()
    assert schema["properties"]["graphs"]["maxItems"] == LIMITS.max_steps
    assert schema["$defs"]["Relation"]["properties"]["predicate"]["maxLength"] == LIMITS.max_label_chars
    assert "maxLength" not in json.dumps(Event.model_json_schema())  # OpenAI's strict mode refuses that keyword
