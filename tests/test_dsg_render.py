"""The DSG timeline picture: written atomically as a real image, lines that describe each graph."""

from __future__ import annotations

import pytest

from dysen.dsg import Event, SceneGraph, events_to_dsg
from dysen.dsg.render import graph_lines, save_timeline
from dysen.errors import DysenError

DSG = events_to_dsg(
    [
        Event(agent="man", predicate="walks", target="dog", start=0, end=2),
        Event(agent="dog", predicate="barks", start=1, end=3),
    ]
)


def test_graph_lines_list_objects_with_attributes_then_relations():
    graph = SceneGraph.from_facts([("man", "walks", "dog")], [("dog", "brown"), ("dog", "barks")])
    assert graph_lines(graph) == ["man", "dog: brown, barks", "man —walks→ dog"]
    assert graph_lines(SceneGraph()) == ["(empty)"]


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_save_timeline_writes_a_picture_and_no_temporary(tmp_path, suffix, magic):
    out = save_timeline(DSG, tmp_path / f"plan{suffix}", title="a man walks his dog")
    assert out.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_save_timeline_refuses_unknown_formats_and_unwritable_places(tmp_path):
    with pytest.raises(DysenError, match="use one of"):
        save_timeline(DSG, tmp_path / "plan.txt")
    with pytest.raises(DysenError, match="cannot write"):
        save_timeline(DSG, tmp_path / "missing" / "plan.png")
