"""Step II (events -> per-step scene graphs) and the step <-> frame alignment."""

from __future__ import annotations

import pytest

from dysen.dsg import DynamicSceneGraph, Event, align_steps_to_frames, events_to_dsg
from dysen.errors import DSGError

LADY = [
    Event(agent="lady", predicate="sitting on", target="chair", start=0, end=5),
    Event(agent="lady", predicate="drinking", target="coffee", start=1, end=2),
    Event(agent="lady", predicate="meeting", target="friend", start=3, end=4),
    Event(agent="lady", predicate="greeting", target="friend", start=3, end=4),
    Event(agent="lady", predicate="looking out", target="window", start=3, end=5),
]


def _relations(dsg: DynamicSceneGraph) -> list[set[tuple[str, str, str]]]:
    return [{r.as_tuple() for r in g.relations} for g in dsg.graphs]


def test_the_papers_lady_example_gives_one_graph_per_unit_interval():
    dsg = events_to_dsg(LADY)
    sit, drink = ("lady", "sitting on", "chair"), ("lady", "drinking", "coffee")
    meet, greet, look = (
        ("lady", "meeting", "friend"),
        ("lady", "greeting", "friend"),
        ("lady", "looking out", "window"),
    )
    assert _relations(dsg) == [{sit}, {sit, drink}, {sit}, {sit, meet, greet, look}, {sit, look}]
    assert dsg.graphs[3].objects == ("lady", "chair", "friend", "window")
    assert all(not g.attributes for g in dsg.graphs)
    assert dsg.events == tuple(LADY)


def test_events_are_sorted_stably_by_start_then_end():
    late = Event(agent="b", predicate="jumps", start=2, end=3)
    first = Event(agent="a", predicate="waits", start=0, end=3)
    tie = Event(agent="c", predicate="waits", start=0, end=3)
    assert events_to_dsg([late, first, tie]).events == (first, tie, late)


def test_sequential_events_never_share_a_step():
    events = [
        Event(agent="circle", predicate="moves right", start=0, end=2),
        Event(agent="square", predicate="jumps", start=2, end=3),
    ]
    dsg = events_to_dsg(events)
    assert [{a.as_tuple() for a in g.attributes} for g in dsg.graphs] == [
        {("circle", "moves right")},
        {("circle", "moves right")},
        {("square", "jumps")},
    ]
    assert [g.objects for g in dsg.graphs] == [("circle",), ("circle",), ("square",)]


def test_intransitive_events_become_attributes_and_objects_keep_first_mention_order():
    events = [
        Event(agent="circle", predicate="jumps", start=0, end=1),
        Event(agent="square", predicate="hits", target="circle", start=0, end=1),
    ]
    graph = events_to_dsg(events).graphs[0]
    assert graph.objects == ("circle", "square")
    assert [a.as_tuple() for a in graph.attributes] == [("circle", "jumps")]
    assert [r.as_tuple() for r in graph.relations] == [("square", "hits", "circle")]


def test_gaps_give_empty_steps_and_no_events_give_one_empty_step():
    dsg = events_to_dsg([Event(agent="a", predicate="runs", start=2, end=3)])
    assert [g.objects for g in dsg.graphs] == [(), (), ("a",)]
    empty = events_to_dsg([])
    assert empty.num_steps == 1 and empty.graphs[0].objects == () and empty.events == ()


def test_from_events_is_step_ii_and_non_events_are_rejected():
    assert DynamicSceneGraph.from_events(LADY) == events_to_dsg(LADY)
    with pytest.raises(DSGError, match="Event objects"):
        events_to_dsg([("lady", "sits", "chair", 0, 1)])


def _check_cover(num_steps: int, num_frames: int) -> None:
    """Every frame shows >= 1 step, steps advance in order, and the step spans tile all frames."""
    align = align_steps_to_frames(num_steps, num_frames)
    assert len(align.steps_of_frame) == num_frames and all(align.steps_of_frame)
    flat = [m for steps in align.steps_of_frame for m in steps]
    assert flat == sorted(flat) and set(flat) == set(range(num_steps))
    assert align.frames_of_step[0][0] == 0 and align.frames_of_step[-1][1] == num_frames
    for (_, stop), (start, _) in zip(align.frames_of_step[:-1], align.frames_of_step[1:], strict=True):
        assert start in (stop, stop - 1)
    matrix = align.matrix()
    assert len(matrix) == num_frames and all(len(row) == num_steps and sum(row) >= 1 for row in matrix)


def test_alignment_16_frames_4_steps():
    align = align_steps_to_frames(4, 16)
    assert align.steps_of_frame == tuple((t // 4,) for t in range(16))
    assert align.frames_of_step == ((0, 4), (4, 8), (8, 12), (12, 16))
    _check_cover(4, 16)


def test_alignment_16_frames_5_steps():
    align = align_steps_to_frames(5, 16)
    assert [s[0] for s in align.steps_of_frame] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert align.frames_of_step == ((0, 4), (4, 7), (7, 10), (10, 13), (13, 16))
    _check_cover(5, 16)


def test_alignment_3_frames_8_steps_covers_several_steps_per_frame():
    align = align_steps_to_frames(8, 3)
    assert align.steps_of_frame == ((0, 1), (2, 3, 4), (5, 6, 7))
    assert align.frames_of_step == ((0, 1),) * 2 + ((1, 2),) * 3 + ((2, 3),) * 3
    assert align.matrix()[0] == [1, 1, 0, 0, 0, 0, 0, 0]
    _check_cover(8, 3)


def test_alignment_always_covers_every_frame_and_step():
    for num_steps in range(1, 12):
        for num_frames in range(1, 20):
            _check_cover(num_steps, num_frames)


def test_event_frames_and_dsg_align():
    dsg = events_to_dsg(LADY)
    align = dsg.align(16)
    assert align.num_steps == 5
    assert align.event_frames(LADY[1]) == (4, 7)
    assert align.event_frames(LADY[0]) == (0, 16)
    with pytest.raises(DSGError, match="ends at 9v"):
        align.event_frames(Event(agent="a", predicate="b", start=0, end=9))


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4"])
def test_alignment_rejects_non_positive_integers(bad):
    with pytest.raises(DSGError, match="positive integer"):
        align_steps_to_frames(bad, 16)
    with pytest.raises(DSGError, match="num_frames"):
        align_steps_to_frames(4, bad)
