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


def test_a_long_plan_is_summarised_not_drawn_in_full():
    from dysen.dsg.render import timeline_figure

    events = [Event(agent=f"thing {i}", predicate="moves right", start=i, end=i + 1) for i in range(30)]
    figure = timeline_figure(events_to_dsg(events), title="t" * 1000)
    top, bottom = figure.axes
    labels = [tick.get_text() for tick in top.get_yticklabels()]
    assert len(labels) == 24 and labels[-1] == "… and 7 more events"
    assert len(top.get_xticklabels()) <= 17
    assert "steps 0–11 of 30" in bottom.get_title(loc="left")
    assert figure.get_size_inches()[0] <= 1.9 * 12
    assert len(figure._suptitle.get_text()) == 120
